"""Set right what a run killed midway left behind (SIGKILL, out of memory, power loss).

Runs under the project's writer lock (tasks.lock), so no other retrain, reindex or promotion is
writing: anything still marked in progress belongs to a run that died. The `champion` alias is
the truth about what is served (it moves in one write, after the index is recorded); status tags
are brought in line with it.
"""

from __future__ import annotations

import shutil

from lensflow.core.index import connect, table_dir, table_name
from lensflow.core.registry import CHAMPION, get_alias, set_tags, version_tags
from lensflow.core.storage import is_remote, sql_quote
from lensflow.tasks.helpers.approval import now

RUN_PREFIXES = ("retrain-",)  # MLflow runs written under the lock (evaluate runs are not: they may be live)


def recover(c, name: str, experiment: str, lancedb_uri: str | None = None, log=None) -> list[str]:
    """Repair interrupted versions and runs, and delete the half-built index table of an abandoned
    version (in `lancedb_uri`); one line per repair (none when nothing was left behind), each
    also passed to `log` when given."""
    from mlflow.exceptions import MlflowException

    fixed = []
    champ = get_alias(c, name, CHAMPION)
    champ_v = int(champ.version) if champ else None
    try:
        versions = c.search_model_versions(f"name = {sql_quote(name)}")
    except MlflowException:
        versions = []
    for mv in versions:
        v, status = int(mv.version), version_tags(mv).get("status")
        if v == champ_v and status != "champion":
            set_tags(c, name, v, {"status": "champion"})
            fixed.append(f"v{v}: champion (its promotion was interrupted after the alias moved; status was {status!r})")
        elif v != champ_v and status == "champion":
            set_tags(c, name, v, {"status": "retired", "retired_at": now(), "succeeded_by": str(champ_v or "")})
            fixed.append(f"v{v}: retired (succeeded by v{champ_v}; the promotion was interrupted before retiring it)")
        elif status == "approved":
            set_tags(
                c,
                name,
                v,
                {
                    "status": "awaiting-approval",
                    "interrupted": f"{now()}: promotion interrupted before the "
                    "alias moved; review it again with the promote flow",
                },
            )
            fixed.append(
                f"v{v}: awaiting-approval (approved, but its promotion was interrupted before the alias moved)"
            )
        elif status == "building":
            set_tags(
                c,
                name,
                v,
                {
                    "status": "failed",
                    "failed_reason": "abandoned: the run building it ended without finishing (killed?)",
                },
            )
            fixed.append(f"v{v}: failed (its run ended while building it)")
            if lancedb_uri and is_remote(lancedb_uri):
                db, table = connect(lancedb_uri), table_name(name, v)
                if table in db.list_tables().tables:
                    db.drop_table(table)
                    fixed.append(f"v{v}: its half-built index table {table} deleted")
            elif lancedb_uri:
                folder = table_dir(lancedb_uri, table_name(name, v))
                if folder.exists():
                    shutil.rmtree(folder)
                    fixed.append(f"v{v}: its half-built index table {folder.name} deleted")
                folder.with_name(folder.name + ".dvc").unlink(missing_ok=True)
    exp = c.get_experiment_by_name(experiment)
    if exp is not None:
        for run in c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'"):
            if (run.info.run_name or "").startswith(RUN_PREFIXES):
                c.set_terminated(run.info.run_id, "KILLED")
                fixed.append(
                    f"MLflow run {run.info.run_name} ({run.info.run_id}): KILLED (it was still RUNNING with no live "
                    "run)"
                )
    for line in fixed if log else ():
        log(f"recovered from an interrupted run: {line}")
    return fixed
