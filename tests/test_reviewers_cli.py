"""`lensflow reviewers` and the key handling of `lensflow review` (in-process, no Prefect server needed: what is
refused before anything is sent)."""

import json
import stat

import pytest
from typer.testing import CliRunner

from lensflow.cli import app
from lensflow.core.signoff import ReviewerKey


@pytest.fixture
def cli(project, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LENSFLOW_REVIEWER_KEY", raising=False)
    monkeypatch.delenv("LENSFLOW_REVIEWER_KEY_FILE", raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_add_shows_the_key_once_and_keeps_only_the_public_half(cli, project):
    out = cli("reviewers", "add", "alice")
    assert out.exit_code == 0, out.output
    key = ReviewerKey.parse(out.stdout.strip().splitlines()[-1])
    store = project.reviewer_store()
    assert store.names() == ["alice"] and key.text().split(".")[-1] not in store.path.read_text()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    run = "0b5e2c1e-2d7c-4a5e-9d57-0d1f6c1d7a11"
    assert store.verify(key.sign(run, 1, "approve"), run, 1, "approve", ttl_s=60) == "alice"
    again = cli("reviewers", "add", "alice")
    assert again.exit_code == 1 and "already registered" in again.output and "--rotate" in again.output
    rotated = cli("reviewers", "add", "alice", "--rotate")
    assert rotated.exit_code == 0
    assert store.load()["alice"]["public_key"] != key.public_text().split(".")[-1]  # the old key is out
    listed = json.loads(cli("reviewers", "list", "--json").stdout)
    assert list(listed) == ["alice"] and "public_key" not in listed["alice"]
    assert cli("reviewers", "remove", "alice").exit_code == 0 and store.names() == []
    gone = cli("reviewers", "remove", "alice")
    assert gone.exit_code == 1 and "not registered" in gone.output


def test_keygen_on_the_reviewers_machine_then_add_the_public_key(cli, project, tmp_path):
    keyfile = tmp_path / "bob.key"
    made = cli("reviewers", "keygen", "bob", "--key-file", str(keyfile))
    assert made.exit_code == 0 and stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    public = made.stdout.strip().splitlines()[-1]
    assert public.startswith("lfpk1.bob.") and ReviewerKey.load(keyfile).public_text() == public
    assert cli("reviewers", "keygen", "bob", "--key-file", str(keyfile)).exit_code == 1  # never overwrites
    wrong = cli("reviewers", "add", "carol", "--public-key", public)
    assert wrong.exit_code == 1 and "not for 'carol'" in wrong.output
    assert cli("reviewers", "add", "bob", "--public-key", public).exit_code == 0
    assert project.reviewer_store().names() == ["bob"]
    written = tmp_path / "dave.key"
    assert cli("reviewers", "add", "dave", "--key-file", str(written)).exit_code == 0
    assert ReviewerKey.load(written).name == "dave" and "lfrk1" not in cli("reviewers", "list").stdout


def test_review_needs_the_reviewers_own_readable_only_key(cli, tmp_path):
    run = "0b5e2c1e-2d7c-4a5e-9d57-0d1f6c1d7a11"
    missing = cli("review", "approve", run)
    assert missing.exit_code == 1 and "no reviewer key" in missing.output and "reviewers add" in missing.output
    keyfile = tmp_path / "alice.key"
    ReviewerKey.generate("alice").save(keyfile)
    keyfile.chmod(0o644)
    shared = cli("review", "code", run, "--key-file", str(keyfile))
    assert shared.exit_code == 1 and "readable by other users" in shared.output and "chmod 600" in shared.output
    keyfile.write_text("lfrk1.alice.not-a-key")
    keyfile.chmod(0o600)
    bad = cli("review", "reject", run, "--key-file", str(keyfile))
    assert bad.exit_code == 1 and "reviewer key" in bad.output


def test_commands_aimed_at_the_projects_platform_use_its_credential(project, monkeypatch):
    import os

    from lensflow import credentials
    from lensflow.platform import Platform

    p = Platform(project)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "restored after the test")  # recorded, so restored
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example.com/api")
    credentials.adopt(p.state_dir, p.prefect_url)  # another server: nothing of ours is sent there
    assert "PREFECT_API_AUTH_STRING" not in os.environ
    monkeypatch.setenv("PREFECT_API_URL", f"{p.prefect_url}/api")
    credentials.adopt(p.state_dir, p.prefect_url)  # no platform credentials yet
    assert "PREFECT_API_AUTH_STRING" not in os.environ
    creds = p.credentials
    monkeypatch.setenv("PREFECT_API_URL", f"{p.prefect_url}1/api")  # another port that starts the same
    credentials.adopt(p.state_dir, p.prefect_url)
    assert "PREFECT_API_AUTH_STRING" not in os.environ
    monkeypatch.setenv("PREFECT_API_URL", f"{p.prefect_url}/api")
    credentials.adopt(p.state_dir, p.prefect_url)
    assert os.environ["PREFECT_API_AUTH_STRING"] == creds.prefect_auth_string
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "someone:else")  # the shell's own setting wins
    credentials.adopt(p.state_dir, p.prefect_url)
    assert os.environ["PREFECT_API_AUTH_STRING"] == "someone:else"
