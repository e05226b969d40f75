import subprocess

from lensflow.core.dvc import dir_md5, ensure_dvc, read_dvc_md5
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
