"""Safe defaults outside the search service: every server lensflow starts binds 127.0.0.1, and credentials in
URIs (or secret environment variables) never show in `lensflow status`, logs, JSON outputs or review pages."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from lensflow.core.redact import MASK, has_credentials, install_log_redaction, link, public_message, redact, redact_uri
from tests.conftest import free_port

SECRET = "s3cret-Pa55word"
LENSFLOW = str(Path(sys.executable).with_name("lensflow"))
LOOPBACK = "127.0.0.1"


# --- 1. bind ------------------------------------------------------------------------------------------------


def test_settings_bind_loopback_by_default(monkeypatch):
    from lensflow.core.settings import Settings

    for name in ("LENSFLOW_SERVE_HOST", "LENSFLOW_MLFLOW_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.serve_host == LOOPBACK and s.mlflow_ui_url.startswith(f"http://{LOOPBACK}:")


@pytest.fixture
def uvicorn_calls(monkeypatch):
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    return calls


def test_lensflow_serve_binds_loopback_unless_told_otherwise(project, monkeypatch, uvicorn_calls):
    from lensflow.cli import app
    from lensflow.core.settings import get_settings

    monkeypatch.delenv("LENSFLOW_SERVE_HOST", raising=False)
    get_settings.cache_clear()
    assert CliRunner().invoke(app, ["serve", "--port", "8765"]).exit_code == 0
    assert uvicorn_calls[-1]["host"] == LOOPBACK and uvicorn_calls[-1]["port"] == 8765
    assert CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"]).exit_code == 0  # told otherwise
    assert uvicorn_calls[-1]["host"] == "0.0.0.0"
    monkeypatch.setenv("LENSFLOW_SERVE_HOST", "10.1.2.3")
    get_settings.cache_clear()
    assert CliRunner().invoke(app, ["serve"]).exit_code == 0
    assert uvicorn_calls[-1]["host"] == "10.1.2.3"


def _hosts(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--host", "-h")]


def test_platform_command_lines_bind_loopback(project):
    from lensflow.platform import Platform

    s = project.model_copy(update={"mlflow_tracking_uri": f"postgresql://lensflow:{SECRET}@db.internal/mlflow"})
    p = Platform(s)
    server, worker = p.server_command(), p.worker_command("lensflow-process")
    mlflow_cmd, mlflow_env = p.mlflow_command()
    assert server[1:3] == ["server", "start"] and _hosts(server) == [LOOPBACK]
    assert mlflow_cmd[1] == "server" and _hosts(mlflow_cmd) == [LOOPBACK]
    assert worker[1:3] == ["worker", "start"] and "--with-healthcheck" not in worker and not _hosts(worker)
    # the store's password and the platform's credentials stay off command lines (any local user reads `ps`)
    creds = p.credentials
    for cmd in (server, worker, mlflow_cmd):
        assert not any(secret in arg for arg in cmd for secret in [SECRET, *creds.secrets()]), cmd
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"] == s.tracking_uri and "basic-auth" in mlflow_cmd
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == creds.mlflow_admin_password
    assert p.server_env() == {"PREFECT_SERVER_API_AUTH_STRING": creds.prefect_auth_string}
    ini = Path(mlflow_env["MLFLOW_AUTH_CONFIG_PATH"])
    assert "default_permission = READ" in ini.read_text() and creds.mlflow_admin_password not in ini.read_text()
    # credentials are made once, owner-only, and reused
    import stat

    for f in (p.state_dir / "credentials.json", ini):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(p.state_dir.stat().st_mode) == 0o700 and Platform(s).credentials == creds
    env = p.env()
    assert env["PREFECT_API_AUTH_STRING"] == creds.prefect_auth_string
    assert {
        env[k] for k in ("PREFECT_SERVER_API_HOST", "PREFECT_WORKER_WEBSERVER_HOST", "PREFECT_RUNNER_SERVER_HOST")
    } == {LOOPBACK}
    assert p.prefect_url.startswith(f"http://{LOOPBACK}:") and env["PREFECT_API_URL"].startswith(f"http://{LOOPBACK}:")
    assert p.mlflow_url.startswith(f"http://{LOOPBACK}:")


def test_platform_up_starts_only_loopback_servers(project, monkeypatch):
    """`up` launches exactly the command lines tested above (nothing else binds a port)."""
    import lensflow.platform as P

    started: list[tuple[str, list[str], dict]] = []
    monkeypatch.setattr(
        P.Platform, "_start", lambda self, name, cmd, cwd, env=None: started.append((name, cmd, env or {})) or 1
    )
    monkeypatch.setattr(P.Platform, "_wait", lambda self, *a, **k: None)
    monkeypatch.setattr(P.Platform, "_cli", lambda self, *a, **k: "")
    monkeypatch.setattr(P.Platform, "deployments", lambda self: ["retrain/weekly"])
    monkeypatch.setattr(P.Platform, "configure_server", lambda self, log=None: None)  # API calls: integration tier
    monkeypatch.setattr(P.Platform, "ensure_mlflow_viewer", lambda self: None)
    monkeypatch.setattr(P, "_ok", lambda url: False)
    P.Platform(project).up(log=lambda *a: None)
    names = [name for name, _, _ in started]
    assert names[0] == "prefect-server" and names[-1] == "mlflow" and all(n.startswith("worker-") for n in names[1:-1])
    for name, cmd, _env in started:
        assert _hosts(cmd) == ([] if name.startswith("worker-") else [LOOPBACK]), cmd
    assert started[-1][2]["MLFLOW_BACKEND_STORE_URI"] == project.tracking_uri
    assert started[0][2] == {"PREFECT_SERVER_API_AUTH_STRING": P.Platform(project).credentials.prefect_auth_string}
    # `source .platform/env` gives a shell the client settings, and the file is owner-only
    env_file = project.path(".platform/env")
    assert "export PREFECT_API_AUTH_STRING=" in env_file.read_text() and oct(env_file.stat().st_mode)[-3:] == "600"


# --- 4. redaction -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, shown",
    [
        (
            f"postgresql://lensflow:{SECRET}@db.internal:5432/mlflow",
            "postgresql://lensflow:***@db.internal:5432/mlflow",
        ),
        (f"mysql+pymysql://root:p@ss{SECRET}@db/x", "mysql+pymysql://root:***@db/x"),
        (f"https://{SECRET}@github.com/org/repo", "https://***@github.com/org/repo"),
        (
            f"s3://bucket/lancedb?aws_access_key_id=AKIAEXAMPLE&aws_secret_access_key={SECRET}&region=eu-west-1",
            "s3://bucket/lancedb?aws_access_key_id=AKIAEXAMPLE&aws_secret_access_key=***&region=eu-west-1",
        ),
        (
            f"https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sig={SECRET}%2F&se=2030",
            "https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sig=***&se=2030",
        ),
        (f"http://mlflow:5000/?token={SECRET}", "http://mlflow:5000/?token=***"),
        ("sqlite:////srv/lensflow/mlflow/mlflow.db", "sqlite:////srv/lensflow/mlflow/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("s3://bucket/lancedb", "s3://bucket/lancedb"),
        ("lancedb", "lancedb"),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown and has_credentials(uri) == (uri != shown)
    assert SECRET not in redact(f"connecting to {uri}: refused")


def test_redact_text_and_environment(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_abcdefghijklmnop")
    text = (
        "API request to http://admin:pw12345@mlflow:5000/api failed; password=hunter2 token: 'abcd1234' "
        '{"db_password": "zz9zz9"} key wJalrXUtnFEMI/K7MDENG/bPxRfiCY, prefect pnu_abcdefghijklmnop'
    )
    out = redact(text)
    for secret in ("pw12345", "hunter2", "abcd1234", "zz9zz9", "wJalrXUtnFEMI", "pnu_abcdefghijklmnop"):
        assert secret not in out, out
    assert "http://admin:***@mlflow:5000/api" in out and "password=***" in out
    # what is not a secret stays readable
    plain = "PWD=/home/ml max_tokens=5 TOKENIZERS_PARALLELISM=false aws_access_key_id=AKIAEXAMPLE see http://127.0.0.1:4200/runs"
    assert redact(plain) == plain


def test_public_message_drops_paths(tmp_path):
    msg = (
        f"no 'champion' version at sqlite:///{tmp_path}/mlflow/mlflow.db; table 't' is missing from {tmp_path}/lancedb "
        f'(File "{sys.prefix}/lib/python3.11/site-packages/lance/x.py", line 3) via postgresql://u:{SECRET}@db/x'
    )
    out = public_message(msg)
    assert str(tmp_path) not in out and "site-packages" not in out and SECRET not in out
    assert out.startswith("no 'champion' version at <path>; table 't' is missing from <path>") and "u:***@db/x" in out
    assert public_message(None) is None and public_message("unknown product id 'a/b'") == "unknown product id 'a/b'"


def test_links_carry_no_credentials(monkeypatch):
    from lensflow.core.settings import Settings

    assert link(f"https://admin:{SECRET}@mlflow.example.com/") == "https://mlflow.example.com/"
    monkeypatch.setenv("LENSFLOW_MLFLOW_UI_URL", f"https://admin:{SECRET}@mlflow.example.com")
    assert Settings().mlflow_ui_url == "https://mlflow.example.com"


def test_review_page_shows_no_credentials(monkeypatch):
    from lensflow.core.settings import Settings
    from lensflow.tasks.review import review_page

    monkeypatch.setenv("LENSFLOW_MLFLOW_UI_URL", f"https://admin:{SECRET}@mlflow.example.com")
    client = SimpleNamespace(get_run=lambda run_id: SimpleNamespace(info=SimpleNamespace(experiment_id="3")))
    page = review_page(
        Settings(),
        client,
        2,
        "run2",
        {"image_recall_at_10": 0.5},
        1,
        {"image_recall_at_10": 0.4},
        "run1",
        {"data md5": "abc"},
    )
    assert "https://mlflow.example.com/#/experiments/3/runs/run2" in page and SECRET not in page and "admin" not in page


def test_offline_env_stops_mlflow_printing_the_tracking_uri():
    from lensflow.core.runtime import OFFLINE_ENV

    assert OFFLINE_ENV["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


def test_log_records_are_redacted():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("lensflow.test-redaction")
    logger.addHandler(handler)
    before = logging.getLogRecordFactory()
    try:
        install_log_redaction()
        install_log_redaction()  # idempotent
        logger.warning("tracking at %s", f"postgresql://u:{SECRET}@db/x")
        logger.warning("store %(uri)s", {"uri": f"s3://b/p?aws_secret_access_key={SECRET}"})
        try:
            raise RuntimeError(f"API request to http://u:{SECRET}@mlflow/api failed")
        except RuntimeError:
            logger.exception("champion not loaded")
        logger.warning("%d of %s rows (%.1f%%)", 3, "10", 30.0)
    finally:
        logging.setLogRecordFactory(before)
        logger.removeHandler(handler)
    text = out.getvalue()
    assert SECRET not in text and "postgresql://u:***@db/x" in text and "aws_secret_access_key=***" in text
    assert "RuntimeError: API request to http://u:***@mlflow/api failed" in text and "3 of 10 rows (30.0%)" in text


# --- 4. `lensflow status` -----------------------------------------------------------------------------------


def test_status_never_prints_index_credentials(project, monkeypatch):
    """A champion whose index lives in an object store addressed with keys: status shows the URI without them."""
    import lensflow.core.champion as C
    from lensflow.cli import app

    uri = f"s3://AKIAEXAMPLE:{SECRET}@bucket/lancedb?aws_secret_access_key={SECRET}"
    tags = {
        "index": json.dumps(
            {"uri": uri, "table": "lensflow-encoder-v1", "version": 3, "rows": 10, "fingerprint": None}
        ),
        "metrics": json.dumps({"image_recall_at_10": 0.5}),
        "data_md5": "abc",
    }
    monkeypatch.setattr(
        C, "resolve_version", lambda s, *a, **k: C.Champion("lensflow-encoder", 1, tags, "runs:/x/model")
    )
    # the store boundary: no object store with these keys exists here, so the connection finds no tables
    monkeypatch.setattr(C, "connect", lambda uri: SimpleNamespace(list_tables=lambda: SimpleNamespace(tables=[])))
    st = C.status(project)
    assert st["champion"]["index"]["uri"] == "s3://AKIAEXAMPLE:***@bucket/lancedb?aws_secret_access_key=***"
    assert st["problems"] and SECRET not in json.dumps(st)
    for args in (["status"], ["status", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "bucket/lancedb" in result.output and SECRET not in result.output, (
            result.output
        )


@pytest.mark.cli
@pytest.mark.parametrize("scheme", ["http", "postgresql"])
def test_lensflow_status_with_a_password_in_the_tracking_uri(tmp_path, scheme):
    """As a user runs it, with no champion reachable: what `lensflow status` prints holds no password."""
    (tmp_path / "data.dvc").touch()
    uri = f"{scheme}://lensflow:{SECRET}@127.0.0.1:{free_port()}/" + ("" if scheme == "http" else "mlflow")
    env = {
        **os.environ,
        "LENSFLOW_ROOT": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / ".prefect"),
        "LENSFLOW_MLFLOW_TRACKING_URI": uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    }
    for args in (["status"], ["status", "--json"]) if scheme == "http" else (["status"],):
        proc = subprocess.run([LENSFLOW, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        shown = proc.stdout + proc.stderr
        assert SECRET not in shown, shown
        if scheme == "http":  # the registry answers nothing: a clear message naming the (redacted) store
            assert f"lensflow:{MASK}@127.0.0.1" in shown, shown
