import json
import os
import shutil
import subprocess
import time

from lensflow.core.dvc import dir_md5, ensure_dvc, read_dvc_md5, run_dvc
from lensflow.tasks.helpers.dvc_delta import snapshot_path
from lensflow.tasks.versioning import version_data


def test_dir_md5_matches_dvc_and_push_fills_the_remote(project, tiny_catalog):
    root, remote = project.root, project.path(project.dvc_remote)
    v = version_data(root, project.data_path, remote)
    assert v.md5 == dir_md5(project.data_path) == read_dvc_md5(root / "data.dvc")
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert len(pushed) >= len(tiny_catalog)  # every image (plus catalog and .dir manifest) is in the remote
    # unchanged data: same md5; a changed image: a new one
    assert version_data(root, project.data_path, remote, push=False).md5 == v.md5
    (project.data_path / tiny_catalog["image_path"][0]).write_bytes(b"changed")
    assert version_data(root, project.data_path, remote, push=False).md5 != v.md5


def test_remote_inside_project_is_stored_relative(project):
    ensure_dvc(project.root, project.path(project.dvc_remote))
    config = (project.root / ".dvc" / "config").read_text()
    assert "url = ../dvc-remote" in config
    out = subprocess.run(["git", "status"], cwd=project.root, capture_output=True, text=True)
    assert out.returncode != 0  # a project outside git gets a --no-scm DVC repo


def _age(folder, seconds: float = 120) -> None:
    """Files as a catalog owner's are: written a while ago (not within the racy mtime window)."""
    past = time.time() - seconds
    for p in folder.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))


def test_a_change_is_versioned_from_the_changes_alone_and_equals_dvc_add(project, tiny_catalog):
    root, data, remote = project.root, project.data_path, project.path(project.dvc_remote)
    _age(data)
    first = version_data(root, data, remote)
    assert first.hashed is None  # no snapshot yet: `dvc add` versions it and the snapshot is taken
    images = sorted(tiny_catalog["image_path"])
    (data / "images" / "new").mkdir()
    (data / "images" / "new" / "added.png").write_bytes((data / images[0]).read_bytes() + b"new")
    (data / images[1]).write_bytes(b"a new photo")
    (data / images[2]).unlink()
    os.utime(data / images[3])  # touched, same bytes
    second = version_data(root, data, remote)
    assert second.hashed == 3  # the added, the rewritten and the touched file; nothing else was read
    assert second.md5 == dir_md5(data) != first.md5
    ours = (root / "data.dvc").read_text()
    run_dvc(root, "add", "-q", str(data))  # DVC, walking everything, agrees byte for byte
    assert (root / "data.dvc").read_text() == ours
    assert json.loads(run_dvc(root, "status", "--json")) == {}
    assert json.loads(run_dvc(root, "status", "--cloud", "--json")) == {}  # the remote has every object
    # the version restores from the remote alone
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(data)
    run_dvc(root, "pull", "-q", "data.dvc")
    assert dir_md5(data) == second.md5
    assert (data / "images" / "new" / "added.png").exists() and not (data / images[2]).exists()


def test_without_a_trusted_snapshot_dvc_add_versions_everything(project, tiny_catalog):
    root, data, remote = project.root, project.data_path, project.path(project.dvc_remote)
    _age(data)
    version_data(root, data, remote, push=False)
    snapshot_path(root, data).unlink()
    (data / tiny_catalog["image_path"][0]).write_bytes(b"changed")
    v = version_data(root, data, remote, push=False)
    assert v.hashed is None and v.md5 == dir_md5(data)
    # the file written just before that snapshot (inside the racy mtime window) is not trusted: read again
    (data / tiny_catalog["image_path"][1]).write_bytes(b"changed later")
    again = version_data(root, data, remote, push=False)
    assert again.hashed == 2 and again.md5 == dir_md5(data)
