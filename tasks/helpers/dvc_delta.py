"""A new DVC version of a tracked folder from what changed since the last one, at the cost of the change.

`dvc add data` walks and re-checks every file (15 s for the 70k-image demo catalog, whatever changed) and
`dvc push` re-checks every object against the remote. Here only files whose size, mtime or inode differ from
the snapshot taken at the last version are hashed; the others keep the md5 recorded then. The new objects
go into the DVC cache (and a local remote) in DVC's own layout, the `.dir` manifest is written as DVC writes
it, and the `.dvc` pointer is updated: `dvc status`, `dvc push`, `dvc pull` and the md5 are exactly what
`dvc add` would have given. Whenever that cannot be guaranteed (no snapshot of the current version, a
`.dvcignore` with patterns, symlinks, an unusual pointer, most files changed), the caller runs `dvc add`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lensflow.core.dvc import read_dvc_md5

POINTER_KEYS = {"md5", "size", "nfiles", "hash", "path"}
MAX_CHANGED = 0.3  # above this share of changed files `dvc add` is as cheap: let DVC do it
RACY_S = 2.0  # files modified this close to a snapshot are hashed again next time (coarse mtime clocks)

Stat = tuple[int, int, int]  # size, mtime_ns, inode


@dataclass
class Delta:
    md5: str
    hashed: int  # files read and hashed: the new or changed ones
    added: int
    changed: int
    removed: int
    objects: list[str]  # md5s this version has and the last did not (files, then the .dir manifest)


def snapshot_path(root: Path, data_dir: Path) -> Path:
    return Path(root) / ".dvc" / "tmp" / "lensflow" / f"{Path(data_dir).name}.stat.json"


def scan(data_dir: Path) -> dict[str, Stat] | None:
    """relpath -> (size, mtime_ns, inode) of every file under data_dir; None when a symlink is found (DVC's
    handling of links is its own business)."""
    out: dict[str, Stat] = {}
    stack = [(os.fspath(data_dir), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_symlink():
                    return None
                if e.is_dir():
                    stack.append((e.path, f"{prefix}{e.name}/"))
                elif e.is_file():
                    st = e.stat()
                    out[prefix + e.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def object_path(store: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object: <store>/files/md5/ab/cdef... (`.dir` kept as a suffix)."""
    h = md5.removesuffix(".dir")
    return Path(store) / "files" / "md5" / h[:2] / (h[2:] + (".dir" if md5.endswith(".dir") else ""))


def manifest_bytes(files: dict[str, str]) -> bytes:
    """The `.dir` object exactly as DVC writes it (dvc_data Tree.as_bytes): sorted by relpath, keys sorted."""
    entries = [{"md5": files[p], "relpath": p} for p in sorted(files)]
    return json.dumps(entries, sort_keys=True).encode("utf-8")


def put_object(store: Path, md5: str, source: Path | None = None, data: bytes | None = None) -> bool:
    """Copy a file (or bytes) into an object store folder, read-only like DVC's; False when already there."""
    dest = object_path(store, md5)
    if dest.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    if source is not None:
        shutil.copyfile(source, tmp)
    else:
        tmp.write_bytes(data or b"")
    os.chmod(tmp, 0o444)
    os.replace(tmp, dest)
    return True


def pointer_is_plain(dvc_file: Path) -> bool:
    """A pointer `dvc add` wrote for one folder, with nothing of the user's own (desc, meta, remote, ...)."""
    doc = yaml.safe_load(dvc_file.read_text()) or {}
    outs = doc.get("outs") or []
    return set(doc) == {"outs"} and len(outs) == 1 and set(outs[0]) <= POINTER_KEYS and outs[0].get("hash") == "md5"


def dvcignore_in_use(root: Path) -> bool:
    ignore = Path(root) / ".dvcignore"
    if not ignore.exists():
        return False
    return any(line.strip() and not line.lstrip().startswith("#") for line in ignore.read_text().splitlines())


def write_snapshot(root: Path, data_dir: Path, md5: str, files: dict[str, str], stats: dict[str, Stat]) -> None:
    """Record (stat, md5) per file for version `md5`; files modified in the last RACY_S seconds are left out,
    so a change within the same mtime tick is never mistaken for no change."""
    horizon = time.time_ns() - int(RACY_S * 1e9)
    rows = {p: [*stats[p], m] for p, m in files.items() if p in stats and stats[p][1] < horizon}
    path = snapshot_path(root, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"md5": md5, "files": rows}))
    os.replace(tmp, path)


def read_snapshot(root: Path, data_dir: Path, md5: str) -> dict[str, list] | None:
    """The snapshot of version `md5`, or None (absent, unreadable or of another version)."""
    try:
        snap = json.loads(snapshot_path(root, data_dir).read_text())
    except (OSError, ValueError):
        return None
    return snap["files"] if snap.get("md5") == md5 else None


def add_changes(root: Path, data_dir: Path) -> Delta | None:
    """Version data_dir from its changes since the version in its `.dvc` pointer (the cache gets the new
    objects); None when `dvc add` must do it. Pushing is the caller's (`push_objects`)."""
    root, data_dir = Path(root), Path(data_dir).resolve()
    dvc_file = data_dir.parent / f"{data_dir.name}.dvc"
    if not dvc_file.exists() or dvcignore_in_use(root) or not pointer_is_plain(dvc_file):
        return None
    old_md5 = read_dvc_md5(dvc_file)
    snap = read_snapshot(root, data_dir, old_md5)
    stats = scan(data_dir)
    if snap is None or stats is None or not stats:
        return None
    changed = [p for p, st in stats.items() if p not in snap or tuple(snap[p][:3]) != st]
    if len(changed) > MAX_CHANGED * len(stats):
        return None
    cache = root / ".dvc" / "cache"
    if not object_path(cache, old_md5).exists():
        return None  # the old manifest is not local (a fresh clone): DVC knows how to fetch it
    old = {e["relpath"]: e["md5"] for e in json.loads(object_path(cache, old_md5).read_text())}
    files = {p: snap[p][3] for p in stats if p not in changed}
    for p in changed:
        files[p] = file_md5(data_dir / p)
        put_object(cache, files[p], source=data_dir / p)
    if any(files[p] != old.get(p) for p in files if p not in changed):
        return None  # the snapshot disagrees with the manifest: trust neither, let DVC hash
    body = manifest_bytes(files)
    md5 = hashlib.md5(body).hexdigest() + ".dir"
    put_object(cache, md5, data=body)
    size = sum(stats[p][0] for p in files)
    pointer = {"outs": [{"md5": md5, "size": size, "nfiles": len(files), "hash": "md5", "path": data_dir.name}]}
    tmp = dvc_file.with_name(f".{dvc_file.name}.tmp")
    tmp.write_text(yaml.safe_dump(pointer, sort_keys=False))
    os.replace(tmp, dvc_file)
    write_snapshot(root, data_dir, md5, files, stats)
    return Delta(
        md5=md5,
        hashed=len(changed),
        added=sum(p not in old for p in files),
        changed=sum(p in old and files[p] != old[p] for p in changed),
        removed=sum(p not in files for p in old),
        objects=sorted({files[p] for p in changed} - set(old.values())) + [md5],
    )


def snapshot_after_add(root: Path, data_dir: Path, before: dict[str, Stat] | None) -> None:
    """After a full `dvc add`: snapshot the files whose stat did not move while DVC read them."""
    data_dir = Path(data_dir).resolve()
    dvc_file = data_dir.parent / f"{data_dir.name}.dvc"
    md5 = read_dvc_md5(dvc_file)
    cached = object_path(Path(root) / ".dvc" / "cache", md5)
    after = scan(data_dir)
    if before is None or after is None or not cached.exists() or not pointer_is_plain(dvc_file):
        return
    files = {e["relpath"]: e["md5"] for e in json.loads(cached.read_text())}
    write_snapshot(root, data_dir, md5, files, {p: st for p, st in after.items() if before.get(p) == st})


def push_objects(remote_dir: Path, root: Path, objects: list[str]) -> None:
    """Copy cache objects to a local-folder DVC remote, files first and `.dir` manifests last (as DVC
    pushes), so a manifest in the remote means its files are there."""
    cache = Path(root) / ".dvc" / "cache"
    for md5 in sorted(objects, key=lambda m: m.endswith(".dir")):
        put_object(remote_dir, md5, source=object_path(cache, md5))
