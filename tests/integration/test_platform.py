"""The local platform, started the real way: Prefect server, process work pool + worker, `prefect deploy --all`
from prefect.yaml, MLflow server. A retrain is triggered with `prefect deployment run` on a tiny catalog and
resumed through Prefect's API with an approving, a rejecting and no answer. The server's automations notify a
webhook receiver on 127.0.0.1 (a run waits for review, a run failed), run logs reach the API at INFO, and two
writers on two workers take the global writer slot one after the other.

Both servers require the platform's credentials (401 without); a decision counts only with the named reviewer's
signed code; after a full approve cycle no secret is found in plain text in any store or log."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lensflow.core.registry import client, version_tags
from lensflow.core.settings import get_settings
from lensflow.platform import code_root
from tests.conftest import free_port

pytestmark = pytest.mark.integration

TINY = {
    "preset": "tiny",
    "epochs": 2,
    "batch_size": 8,
    "progress": False,
    "approval_poll_s": 1,
    "gate": {"floors": {}, "tolerance": 1.0},
}


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps (path, JSON body) of every POST."""

    def __init__(self):
        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                got.append((self.path, json.loads(body or b"{}")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path: str, words: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p, body in self.got:
                if p == path and words in body.get("body", ""):
                    return body
            time.sleep(0.5)
        raise AssertionError(f"no notification to {path} containing {words!r} in {timeout} s; got {self.got}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def platform(project, tiny_catalog, tmp_path, monkeypatch, receiver):
    from lensflow.platform import Platform

    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)  # the platform's own default (INFO) applies
    monkeypatch.setenv("LENSFLOW_NOTIFY_REVIEWERS_URL", f"{receiver.url}/reviewers")
    monkeypatch.setenv("LENSFLOW_NOTIFY_ENGINEERS_URL", f"{receiver.url}/engineers")
    monkeypatch.setenv("LENSFLOW_PREFECT_PORT", str(free_port()))
    monkeypatch.setenv("LENSFLOW_MLFLOW_PORT", str(free_port()))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")
    get_settings.cache_clear()
    p = Platform(get_settings())
    try:
        info = p.up(log=print)
        yield p, info
    finally:
        p.down(log=print)


def trigger(p, params: dict, deployment: str = "retrain/weekly") -> str:
    body = {"params": TINY | params} if deployment == "retrain/weekly" else {"params": params}
    out = subprocess.run(
        [p._bin("prefect"), "deployment", "run", deployment, "--params", json.dumps(body)],
        env=p.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return re.search(r"UUID:\s*([0-9a-f-]{36})", out.stdout).group(1)


def api(p):
    """This process's Prefect client pointed at the platform, with the platform credential."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings(
        {PREFECT_API_URL: f"{p.prefect_url}/api", PREFECT_API_AUTH_STRING: p.credentials.prefect_auth_string}
    )


def wait_for(p, run_id: str, done, timeout: float = 300):
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with api(p):
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as c:
                fr = c.read_flow_run(run_id)
            if fr.state and done(fr.state):
                return fr.state
            time.sleep(1)
    log = (p.state_dir / "logs" / "worker-lensflow-process.log").read_text()[-4000:]
    raise AssertionError(f"flow run {run_id} did not reach the expected state in {timeout} s; last: {fr.state}\n{log}")


def resume(p, run_id: str, answer: dict) -> None:
    from prefect.flow_runs import resume_flow_run

    with api(p):
        resume_flow_run(run_id, run_input=answer)


def refused_again(p, run_id: str, count: int, timeout: float = 60) -> str:
    """The run refused its `count`-th answer and paused again: the refusal as its log line says it."""
    logs = wait_logs(p, run_id, "refused a decision", timeout, count)
    wait_for(p, run_id, lambda s: s.is_paused())
    return [x["message"] for x in logs if "refused a decision" in x["message"]][count - 1]


def lensflow(p, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [p._bin("lensflow"), *args], env=p.env() | (env or {}), capture_output=True, text=True, timeout=120
    )
    assert not check or out.returncode == 0, out.stdout + out.stderr
    return out


def status_code(url: str, auth: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    import base64

    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:  # nothing listens (yet)
        return 0


def champion_tags(project) -> tuple[int, dict]:
    mv = client(project.tracking_uri).get_model_version_by_alias(project.registered_model, "champion")
    return int(mv.version), version_tags(mv)


def run_logs(p, run_id: str) -> list[dict]:
    """The flow run's log lines as the Prefect UI shows them (POST /api/logs/filter, all pages, oldest first)."""
    out: list[dict] = []
    while True:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": len(out), "sort": "TIMESTAMP_ASC"}
        req = urllib.request.Request(
            f"{p.prefect_url}/api/logs/filter",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **p.auth_header()},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            page = json.load(r)
        out += page
        if len(page) < 200:
            return out


def wait_logs(p, run_id: str, words: str, timeout: float = 60, count: int = 1) -> list[dict]:
    """The run's log lines once `count` of them contain `words`."""
    deadline = time.monotonic() + timeout
    while True:
        logs = run_logs(p, run_id)
        if sum(words in x["message"] for x in logs) >= count:
            return logs
        assert time.monotonic() < deadline, [x["message"] for x in logs]
        time.sleep(1)


def slot_interval(p, run_id: str, timeout: float = 60) -> tuple[dt.datetime, dt.datetime]:
    """When the run held the global writer slot, from its own log lines in the API (a finished run's last
    lines arrive a little after its final state: the log handler ships in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = run_logs(p, run_id)
        held = [x["timestamp"] for x in logs if "holds the global writer slot" in x["message"]]
        gone = [x["timestamp"] for x in logs if "releases the global writer slot" in x["message"]]
        if held and gone:
            return dt.datetime.fromisoformat(held[0]), dt.datetime.fromisoformat(gone[-1])
        assert time.monotonic() < deadline, [x["message"] for x in logs]
        time.sleep(1)


def test_deployed_retrain_approve_reject_timeout(platform, project, receiver, reviewers, tmp_path):
    p, info = platform
    assert {"retrain/weekly", "promote/review", "evaluate/on-demand", "reindex/daily"} <= set(info["deployments"])
    from prefect import get_client

    with api(p), get_client(sync_client=True) as c:
        dep = c.read_deployment_by_name("retrain/weekly")
    assert dep.schedules and dep.schedules[0].schedule.cron == "0 3 * * 1" and dep.work_pool_name == "lensflow-process"
    # one retrain at a time: a second scheduled or UI run waits in the queue (prefect.yaml's concurrency_limit)
    assert dep.global_concurrency_limit.limit == 1 and dep.concurrency_options.collision_strategy == "ENQUEUE"
    with urllib.request.urlopen(f"{p.mlflow_url}/health", timeout=5) as r:
        assert r.status == 200

    # 0. both servers answer 401 without the platform's credentials (health probes stay open)
    creds = p.credentials
    flow_runs = f"{p.prefect_url}/api/flow_runs/filter"
    assert status_code(flow_runs, data=b"{}") == 401
    assert status_code(flow_runs, ("lensflow", "wrong"), data=b"{}") == 401
    assert status_code(flow_runs, ("lensflow", creds.prefect_password), data=b"{}") == 200
    experiments = f"{p.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert status_code(f"{p.mlflow_url}/") == 401 and status_code(experiments) == 401
    assert status_code(experiments, ("admin", "wrong")) == 401
    assert status_code(experiments, ("viewer", creds.mlflow_viewer_password)) == 200  # the viewer reads...
    tag = json.dumps({"name": project.registered_model, "key": "k", "value": "v"}).encode()
    tag_url = f"{p.mlflow_url}/api/2.0/mlflow/registered-models/set-tag"
    assert status_code(tag_url, ("viewer", creds.mlflow_viewer_password), tag) in (403, 404)  # ...and writes nothing
    import stat

    for f in ("credentials.json", "env", "mlflow-auth.ini", "reviewers.json"):
        if (p.state_dir / f).exists():
            assert stat.S_IMODE((p.state_dir / f).stat().st_mode) == 0o600, f
    env_file = (p.state_dir / "env").read_text()
    assert f"PREFECT_API_AUTH_STRING=lensflow:{creds.prefect_password}" in env_file.replace("'", "")

    # 1. approve: the paused run shows the form; a typed name, a stranger's key in alice's name and a removed
    # reviewer's key are refused (the run keeps waiting); alice's code promotes v1
    keys = reviewers("alice", "bob")
    project.reviewer_store().remove("bob")
    run = trigger(p, {})
    wait_for(p, run, lambda s: s.is_paused())
    # the server's automation told the reviewers, with a link to the run's form
    told = receiver.wait("/reviewers", "waits for a reviewer")
    assert run in told["body"] and told["subject"] == "lensflow: a promotion waits for review"
    from lensflow.core.signoff import ReviewerKey

    stranger = ReviewerKey.generate("alice")
    answers = [
        ({"decision": "approve", "reviewer": "alice", "comment": "trust me"}, "no proof"),
        (
            {"decision": "approve", "reviewer": "alice", "code": stranger.sign(run, 1, "approve")},
            "does not verify with 'alice'",
        ),
        ({"decision": "approve", "reviewer": "bob", "code": keys["bob"].sign(run, 1, "approve")}, "not a registered"),
    ]
    for n, (answer, why) in enumerate(answers, 1):
        resume(p, run, answer)
        assert why in refused_again(p, run, n)
        assert "champion" not in (client(project.tracking_uri).search_registered_models()[0].aliases or {})
    run_a_code = keys["alice"].sign(run, 1, "approve")
    resume(p, run, {"decision": "approve", "reviewer": "alice", "code": run_a_code, "comment": "looks right"})
    assert wait_for(p, run, lambda s: s.is_final()).is_completed()
    # the run's log in the UI has its stages (task runs), the writer slot, the gate decision and the outcome
    logs = wait_logs(p, run, "retrain finished")  # a run's last lines arrive after its final state
    messages = "\n".join(x["message"] for x in logs)
    (project.root / "run-logs.txt").write_text(messages)  # for a failing assertion below
    assert sum(1 for x in logs if x["task_run_id"]) >= 5, messages
    assert "holds the global writer slot 'lensflow-writer'" in messages and "retrain finished" in messages
    assert '"outcome": "promoted"' in messages and "alice" in messages
    version, tags = champion_tags(project)
    assert version == 1 and tags["approved_by"] == "alice" and tags["approval"] == "reviewer"
    assert tags["approval_comment"] == "looks right" and tags["approved_at"]
    assert all(why in tags["approval_refused"] for _, why in answers)
    # the MLflow server (the UI's backend) sees the same registry, to the viewer too
    alias = f"{p.mlflow_url}/api/2.0/mlflow/registered-models/alias?name={project.registered_model}&alias=champion"
    request = urllib.request.Request(alias)
    request.add_header(
        "Authorization", "Basic " + base64.b64encode(f"viewer:{creds.mlflow_viewer_password}".encode()).decode()
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert json.load(r)["model_version"]["version"] == "1"

    # 2. reject, from the terminal (`lensflow review`): without alice's key nothing is sent; run A's code and a
    # stranger's key are refused; alice's own key rejects v2 with her reason; the champion stays v1
    run = trigger(p, {"seed": 1})
    wait_for(p, run, lambda s: s.is_paused())
    listed = lensflow(p, "review", "list").stdout
    assert run in listed and "v2 (challenger) vs champion v1" in listed
    nokey = lensflow(p, "review", "reject", run, check=False, env={"HOME": str(tmp_path / "nobody")})
    assert nokey.returncode == 1 and "no reviewer key" in nokey.stderr
    resume(p, run, {"decision": "approve", "reviewer": "alice", "code": run_a_code})  # replayed from run A
    assert "does not verify" in refused_again(p, run, 1)
    stranger.save(tmp_path / "stranger.key")
    lensflow(p, "review", "approve", run, "--key-file", str(tmp_path / "stranger.key"))
    assert "does not verify with 'alice'" in refused_again(p, run, 2)
    assert champion_tags(project)[0] == 1
    keys["alice"].save(tmp_path / "alice.key")
    code = lensflow(p, "review", "code", run, "--reject", "--key-file", str(tmp_path / "alice.key")).stdout.strip()
    assert code.startswith("lfrp1.alice.reject.")
    lensflow(p, "review", "reject", run, "--key-file", str(tmp_path / "alice.key"), "-m", "not convinced")
    state = wait_for(p, run, lambda s: s.is_final())
    assert state.is_completed() and state.name == "Rejected"
    assert champion_tags(project)[0] == 1
    v2 = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert v2["status"] == "rejected" and v2["rejected_by"] == "alice" and "not convinced" in v2["rejected_reason"]
    assert "does not verify" in v2["approval_refused"]

    # no secret in plain text anywhere the platform keeps or logs things, after a full approve cycle: the MLflow
    # store and artifacts, the Prefect database (PREFECT_HOME is under the project here), the platform's logs
    # ... and a search service (an API key set) answering the champion: its log is scanned too
    api_key = "sk-" + "7" * 40
    service_log = project.root / "serve.log"
    port = free_port()
    with open(service_log, "w") as out:
        server = subprocess.Popen(
            [p._bin("lensflow"), "serve", "--port", str(port)],
            env=p.env() | {"LENSFLOW_API_KEY": api_key, "LENSFLOW_SWAP_POLL_S": "600"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/search/text?q=shoe"
        deadline = time.monotonic() + 120
        while status_code(f"http://127.0.0.1:{port}/readyz") != 200:
            assert time.monotonic() < deadline and server.poll() is None, service_log.read_text()[-3000:]
            time.sleep(0.5)
        assert status_code(url) == 401
        ok = urllib.request.Request(url, headers={"X-API-Key": api_key})
        with urllib.request.urlopen(ok, timeout=30) as r:
            assert json.load(r)["model_version"] == 1
    finally:
        server.terminate()
        server.wait(30)
    leaked = scan_for_secrets(
        [project.root],
        {
            **{f"platform secret {i}": v for i, v in enumerate(creds.secrets())},
            "alice's key": keys["alice"].text(),
            "the search API key": api_key,
        },
        skip={p.state_dir / "credentials.json", p.state_dir / "env", tmp_path / "alice.key"},
    )
    assert "GET /search/text" in service_log.read_text() and not leaked, leaked

    # 3. nobody answers: the pause times out, v3 is rejected, the champion stays v1
    run = trigger(p, {"seed": 2, "approval_timeout_s": 4})
    assert wait_for(p, run, lambda s: s.is_final()).is_failed()
    assert champion_tags(project)[0] == 1
    # ... and the engineers were told the run failed
    assert run in receiver.wait("/engineers", "ended Failed")["body"]

    # 4. two writers at once on two workers: the global writer slot lets one write at a time
    p._start("worker-second", p.worker_command("lensflow-process"), code_root(project))
    first = trigger(p, {"seed": 3, "approval": "auto-approve"})
    second = trigger(p, {}, deployment="reindex/daily")
    for r in (first, second):
        assert wait_for(p, r, lambda s: s.is_final()).is_completed()
    (a0, a1), (b0, b1) = sorted([slot_interval(p, first), slot_interval(p, second)])
    assert a1 <= b0, f"writers overlapped: {a0}-{a1} and {b0}-{b1}"
    v3 = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "3"))
    assert v3["status"] == "rejected" and "timed out" in v3["rejected_reason"]


def scan_for_secrets(folders, secrets: dict[str, str], skip: set) -> list[str]:
    """Files under `folders` (databases and logs included, read as bytes) holding any secret, or the secret's
    distinctive part (the private half of a key)."""
    needles = {name: value.split(".")[-1].encode() for name, value in secrets.items()}
    found = []
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file() and f not in skip:
                data = f.read_bytes()
                found += [f"{name} in {f}" for name, needle in needles.items() if needle in data]
    return found
