"""DVC versioning of the catalog and of index folders (`dvc add` + push), plus the git commit."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from lensflow.core.dvc import DvcError, dvc_pointer, ensure_dvc, read_dvc_md5, run_dvc
from lensflow.core.storage import is_remote
from lensflow.tasks import stage
from lensflow.tasks.helpers.dvc_delta import add_changes, object_path, push_objects, scan, snapshot_after_add


@dataclass
class DataVersion:
    md5: str
    dvc_file: Path
    pushed: bool
    hashed: int | None = None  # files hashed when versioned from the changes; None: `dvc add` did it all


def version_data(root: Path, data_dir: Path, remote: str | Path, push: bool = True) -> DataVersion:
    """Version the data directory and push it to the remote, at the cost of what changed since its last
    version (tasks/helpers/dvc_delta.py), or with `dvc add` + `dvc push` when that path does not apply."""
    url = ensure_dvc(root, remote)
    data_dir = Path(data_dir).resolve()
    dvc_file = dvc_pointer(data_dir)
    base = read_dvc_md5(dvc_file) if dvc_file.exists() else None
    delta = add_changes(root, data_dir)
    if delta is None:
        before = scan(data_dir)
        run_dvc(root, "add", "-q", str(data_dir))
        snapshot_after_add(root, data_dir, before)
    if push:
        local = None if is_remote(url) else Path(url)
        if delta is not None and local is not None and base and object_path(local, base).exists():
            push_objects(local, root, delta.objects)  # the last version is complete there: add what is new
        else:
            run_dvc(root, "push", "-q", str(dvc_file))
    return DataVersion(read_dvc_md5(dvc_file), dvc_file, push, None if delta is None else delta.hashed)


def git_commit(root: Path) -> str:
    """HEAD's commit ('+dirty' when the tree has changes), or 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


version_data_task = stage(version_data, name="version-data", retries=1)


def track_dir(root: Path, remote: str | Path, path: Path, push: bool = True) -> str:
    """`dvc add` a directory (an index) and push it to the remote. Returns its DVC md5."""
    ensure_dvc(root, remote)
    path = Path(path).resolve()
    if not path.is_relative_to(Path(root).resolve()):
        raise DvcError(
            f"{path} is outside the DVC repository {root}: put the LanceDB directory under the project root "
            "(LENSFLOW_LANCEDB_URI) or use an object-store URI"
        )
    run_dvc(root, "add", "-q", str(path))
    if push:
        run_dvc(root, "push", "-q", str(dvc_pointer(path)))
    return read_dvc_md5(dvc_pointer(path))
