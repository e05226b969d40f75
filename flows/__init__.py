"""Prefect flows: each body is the list of its steps (tasks/), plus the shared preamble (flows/common.py) and
the sharded-embedding sub-flow (flows/shard.py). Logic lives in tasks/ and lensflow/core/."""
