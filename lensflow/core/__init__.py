"""The Prefect-free core: settings, storage URIs, redaction, the MLflow registry, the LanceDB index lookups
and vector search, and the champion lookups that both the flows (via tasks/) and the search service need.

Imports point down only: nothing here imports models/, tasks/, flows/, serving/ or the CLI, nor Prefect,
Dask, Great Expectations or DVC's Python package (DVC runs as a command: lensflow.core.dvc).
"""
