"""DVC, run as a command (never imported): the project's repo and remote, the md5 DVC gives a folder, and
restoring a tracked folder from the remote by that md5. The search service restores a champion's index this way."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from lensflow.core.storage import is_remote


class DvcError(RuntimeError):
    pass


def run_dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DvcError(f"`dvc {' '.join(args)}` failed in {root}:\n{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def ensure_dvc(root: Path, remote: str | Path) -> str:
    """A DVC repo at root with a default remote (unless one is configured already): a local folder, or an
    object-store URL (s3://bucket/prefix), whose endpoint and credentials DVC reads from the AWS_* environment
    variables at run time, so none are written into .dvc/config. Returns the default remote's URL (a local
    folder as an absolute path)."""
    if not (root / ".dvc").exists():
        run_dvc(root, "init", "-q", *([] if (root / ".git").exists() else ["--no-scm"]))
    current = default_remote(root)
    if current:
        return current
    url = str(remote)
    if not is_remote(url):
        remote = Path(remote)
        remote.mkdir(parents=True, exist_ok=True)
        # Relative (dvc rewrites it against .dvc/) when inside the project,
        # so a committed .dvc/config works in every clone.
        url = os.path.relpath(remote, root) if remote.resolve().is_relative_to(root.resolve()) else str(remote)
    run_dvc(root, "remote", "add", "-d", "storage" if is_remote(url) else "local", url)
    return str(remote if is_remote(str(remote)) else Path(remote).resolve())


def default_remote(root: Path) -> str | None:
    """The URL of the repo's default DVC remote (local folders absolute, as DVC resolves them), or None."""
    try:
        listing = run_dvc(root, "config", "--list")  # key=value lines, merged over DVC's config levels
    except DvcError:
        return None
    config = dict(line.partition("=")[::2] for line in listing.splitlines() if "=" in line)
    name = config.get("core.remote")
    return config.get(f"remote.{name}.url") if name else None


def read_dvc_md5(dvc_file: Path) -> str:
    if not dvc_file.exists():
        raise DvcError(
            f"{dvc_file} does not exist: the data is not tracked by DVC yet "
            "(bring a catalog with `lensflow data import`, or run `lensflow data sample`)"
        )
    outs = yaml.safe_load(dvc_file.read_text()).get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise DvcError(f"{dvc_file} has no md5 in outs[0]")
    return outs[0]["md5"]


def dir_md5(path: Path) -> str:
    """The md5 DVC gives a directory (`<md5>.dir`): md5 of the sorted JSON list of file md5s."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    entries = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h = hashlib.md5()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        entries.append({"md5": h.hexdigest(), "relpath": file.relative_to(path).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def dvc_pointer(path: Path) -> Path:
    return path.parent / f"{path.name}.dvc"


def restore_dir(root: Path, remote: str | Path, path: Path, md5: str) -> None:
    """Bring back a tracked directory by its md5 from the DVC remote (the pointer is rewritten from the md5,
    so a deleted or edited .dvc file does not matter)."""
    ensure_dvc(root, remote)
    path = Path(path).resolve()
    if not md5 or not md5.endswith(".dir"):
        raise DvcError(f"cannot restore {path}: {md5!r} is not the DVC md5 of a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    dvc_pointer(path).write_text(
        yaml.safe_dump({"outs": [{"md5": md5, "hash": "md5", "path": path.name}]}, sort_keys=False)
    )
    try:
        run_dvc(root, "pull", "-q", str(dvc_pointer(path)))
    except DvcError as exc:
        raise DvcError(f"could not restore {path.name} (md5 {md5}) from the DVC remote: {exc}") from exc
