"""Resolve the champion (alias -> version -> index), check its index against what it recorded, report status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lensflow.core.dvc import restore_dir
from lensflow.core.index import connect, table_dir, table_fingerprint, table_metadata
from lensflow.core.redact import redact_uri
from lensflow.core.registry import CHAMPION, client, get_alias, version_tags
from lensflow.core.settings import Settings
from lensflow.core.storage import is_remote, sql_quote


class NoChampion(LookupError):
    pass


class IndexMismatch(RuntimeError):
    """The index on disk is not the one recorded on the champion: refuse to serve it."""


@dataclass
class Champion:
    name: str
    version: int
    tags: dict[str, str]
    source: str

    @property
    def metrics(self) -> dict:
        return json.loads(self.tags.get("metrics", "{}"))

    @property
    def index(self) -> dict:
        """The index this version serves: one JSON tag, written in one call (a reindex replaces it whole).
        `data_md5` is the catalog version the index reflects (the training data's until a reindex)."""
        t = self.tags
        if t.get("index"):
            idx = json.loads(t["index"])
        else:  # versions registered before the single record: one tag per field
            idx = {
                "uri": t.get("index.uri"),
                "table": t.get("index.table"),
                "version": int(t["index.version"]) if t.get("index.version") else None,
                "rows": int(t["index.rows"]) if t.get("index.rows") else None,
                "fingerprint": t.get("index.fingerprint"),
                "ann": json.loads(t["index.ann"]) if t.get("index.ann") else None,
            }
        return {
            "uri": None,
            "table": None,
            "version": None,
            "rows": None,
            "fingerprint": None,
            **idx,
            "data_md5": idx.get("data_md5") or t.get("data_md5"),
        }


def resolve_champion(settings: Settings) -> Champion:
    try:
        return resolve_version(settings)
    except NoChampion as exc:
        raise NoChampion(no_champion(exc, last_run(settings))) from None


def no_champion(exc: NoChampion, last: dict | None, see_status: bool = True) -> str:
    """Why nothing is served, and what to do: the first retrain, or what became of the last one."""
    if last is None:
        return f"{exc} (run `lensflow retrain --auto-approve` first)"
    return (
        f"no champion yet: the last run registered v{last['version']}, which ended {last['status']}"
        + (f" ({last['reason']})" if last["reason"] else "")
        + ("; `lensflow status` says what to do" if see_status else "")
    )


def resolve_version(settings: Settings, version: int | None = None, alias: str = CHAMPION) -> Champion:
    """A model version (by number, or behind `alias`) with its lensflow tags."""
    from mlflow.exceptions import MlflowException

    c = client(settings.tracking_uri)
    if version is None:
        mv = get_alias(c, settings.registered_model, alias)
        if mv is None:
            raise NoChampion(
                f"no '{alias}' version of model {settings.registered_model!r} at {redact_uri(settings.tracking_uri)}"
            )
    else:
        try:
            mv = c.get_model_version(settings.registered_model, str(version))
        except MlflowException as exc:
            raise NoChampion(f"model {settings.registered_model!r} has no version {version}") from exc
    return Champion(settings.registered_model, int(mv.version), version_tags(mv), mv.source)


def index_problems(champ: Champion) -> list[str]:
    """Every way the index (on disk or in the object store) differs from what the champion's version records."""
    idx = champ.index
    if not idx["uri"] or not idx["table"]:
        return [f"model version {champ.version} records no index"]
    db = connect(idx["uri"])
    if idx["table"] not in db.list_tables().tables:
        hint = (
            f" (loading it for serving pulls it from the DVC remote by md5 {idx['fingerprint']})"
            if idx["fingerprint"] and not is_remote(idx["uri"])
            else ""
        )
        return [f"table {idx['table']!r} is missing from {redact_uri(idx['uri'])}{hint}"]
    tbl = db.open_table(idx["table"])
    problems = []
    if tbl.version != idx["version"]:
        problems.append(f"table {idx['table']!r} is at version {tbl.version}, the champion recorded {idx['version']}")
    rows = tbl.count_rows()
    if rows != idx["rows"]:
        problems.append(f"table {idx['table']!r} has {rows} rows, the champion recorded {idx['rows']}")
    meta = table_metadata(tbl)
    if str(meta.get("model_version")) != str(champ.version) or meta.get("model_name") != champ.name:
        problems.append(
            f"table {idx['table']!r} was built for {meta.get('model_name')} v{meta.get('model_version')}, "
            f"not {champ.name} v{champ.version}"
        )
    fp = table_fingerprint(idx["uri"], idx["table"])
    if fp != idx["fingerprint"]:
        problems.append(f"index fingerprint {fp} differs from the recorded {idx['fingerprint']}")
    return problems


def restore_index(settings: Settings, champ: Champion) -> bool:
    """Pull the champion's index directory from the DVC remote by its recorded md5 when it is not on disk.
    Returns whether it was restored; what comes back is verified by `index_problems` like any index."""
    idx = champ.index
    if not idx["uri"] or not idx["table"] or is_remote(idx["uri"]) or not idx["fingerprint"]:
        return False
    path = table_dir(idx["uri"], idx["table"])
    if path.exists():
        return False
    restore_dir(settings.root, settings.dvc_remote_url, path, idx["fingerprint"])
    return True


def last_run(settings: Settings) -> dict | None:
    """How the newest registered version ended: its status (promoted versions say `champion`), why it was
    not promoted and what to do about it. None before the first registration."""
    c = client(settings.tracking_uri)
    try:
        found = c.search_model_versions(
            f"name = {sql_quote(settings.registered_model)}", max_results=1, order_by=["version_number DESC"]
        )
    except Exception:  # noqa: BLE001 - no registry yet
        return None
    if not found:
        return None
    t = version_tags(found[0])
    reason = t.get("rejected_reason") or t.get("failed_reason") or t.get("superseded_reason")
    return {
        "version": int(found[0].version),
        "status": t.get("status"),
        "reason": reason,
        "next_step": t.get("next_step") or None,
        "run_id": t.get("run_id"),
        "data_md5": t.get("data_md5"),
        "at": t.get("approved_at") or t.get("rejected_at"),
    }


def status(settings: Settings) -> dict:
    """The champion, its metrics and index record (URIs redacted, for display), the index's problems and
    how the last run ended."""
    last = last_run(settings)
    try:
        champ = resolve_version(settings)
    except NoChampion as exc:
        return {
            "champion": None,
            "consistent": False,
            "problems": [no_champion(exc, last, see_status=False)],
            "last_run": last,
        }
    problems = index_problems(champ)
    idx = champ.index
    return {
        "last_run": last,
        "champion": {
            "name": champ.name,
            "version": champ.version,
            "metrics": champ.metrics,
            "data_md5": champ.tags.get("data_md5"),
            "git_commit": champ.tags.get("git_commit"),
            "approval": {k: champ.tags.get(k) for k in ("approval", "approved_by", "approved_at")},
            "index": {
                k: redact_uri(idx[k]) if k == "uri" and idx[k] else idx.get(k)
                for k in ("uri", "table", "version", "rows", "fingerprint", "data_md5", "built")
            },
        },
        "consistent": not problems,
        "problems": problems,
    }


def model_dir(source: str) -> Path:
    """The encoder directory of a registered version (downloaded from its artifact store when remote). A version
    is an MLflow pyfunc model (serving/pyfunc.py) holding the directory as its `encoder` artifact; versions
    registered before that are the directory itself."""
    import mlflow.artifacts
    import yaml

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source))
    mlmodel = folder / "MLmodel"
    if not mlmodel.exists():
        return folder
    spec = yaml.safe_load(mlmodel.read_text())
    return folder / spec["flavors"]["python_function"]["artifacts"]["encoder"]["path"]
