"""The local platform, started the real way: Prefect server, process work pool + worker, `prefect deploy --all`
from prefect.yaml, MLflow server. A retrain is triggered with `prefect deployment run` on a tiny catalog and
resumed through Prefect's API with an approving, a rejecting and no answer. The server's automations notify a
webhook receiver on 127.0.0.1 (a run waits for review, a run failed), run logs reach the API at INFO, and two
writers on two workers take the global writer slot one after the other."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import threading
import time
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
    monkeypatch.setenv("LENSFLOW_REVIEWERS", "alice")
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


def wait_for(p, run_id: str, done, timeout: float = 300):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: f"{p.prefect_url}/api"}):
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
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"{p.prefect_url}/api"}):
        resume_flow_run(run_id, run_input=answer)


def lensflow(p, *args: str) -> str:
    out = subprocess.run([p._bin("lensflow"), *args], env=p.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


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
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            page = json.load(r)
        out += page
        if len(page) < 200:
            return out


def wait_logs(p, run_id: str, words: str, timeout: float = 60) -> list[dict]:
    """The run's log lines once one of them contains `words`."""
    deadline = time.monotonic() + timeout
    while True:
        logs = run_logs(p, run_id)
        if any(words in x["message"] for x in logs):
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


def test_deployed_retrain_approve_reject_timeout(platform, project, receiver):
    p, info = platform
    assert {"retrain/weekly", "promote/review", "evaluate/on-demand", "reindex/daily"} <= set(info["deployments"])
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"{p.prefect_url}/api"}), get_client(sync_client=True) as c:
        dep = c.read_deployment_by_name("retrain/weekly")
    assert dep.schedules and dep.schedules[0].schedule.cron == "0 3 * * 1" and dep.work_pool_name == "lensflow-process"
    # one retrain at a time: a second scheduled or UI run waits in the queue (prefect.yaml's concurrency_limit)
    assert dep.global_concurrency_limit.limit == 1 and dep.concurrency_options.collision_strategy == "ENQUEUE"
    with urllib.request.urlopen(f"{p.mlflow_url}/health", timeout=5) as r:
        assert r.status == 200

    # 1. approve: the paused run shows the form; alice approves through the API; champion moves to v1
    run = trigger(p, {})
    wait_for(p, run, lambda s: s.is_paused())
    # the server's automation told the reviewers, with a link to the run's form
    told = receiver.wait("/reviewers", "waits for a reviewer")
    assert run in told["body"] and told["subject"] == "lensflow: a promotion waits for review"
    resume(p, run, {"decision": "approve", "reviewer": "alice", "comment": "looks right"})
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
    # the MLflow server (the UI's backend) sees the same registry
    with urllib.request.urlopen(
        f"{p.mlflow_url}/api/2.0/mlflow/registered-models/alias?name={project.registered_model}&alias=champion",
        timeout=10,
    ) as r:
        assert json.load(r)["model_version"]["version"] == "1"

    # 2. reject, from the terminal (`lensflow review`): v2 is rejected with alice's reason, the champion stays v1
    run = trigger(p, {"seed": 1})
    wait_for(p, run, lambda s: s.is_paused())
    listed = lensflow(p, "review", "list")
    assert run in listed and "v2 (challenger) vs champion v1" in listed
    lensflow(p, "review", "reject", run, "--reviewer", "alice", "-m", "not convinced")
    state = wait_for(p, run, lambda s: s.is_final())
    assert state.is_completed() and state.name == "Rejected"
    assert champion_tags(project)[0] == 1
    v2 = version_tags(client(project.tracking_uri).get_model_version(project.registered_model, "2"))
    assert v2["status"] == "rejected" and v2["rejected_by"] == "alice" and "not convinced" in v2["rejected_reason"]

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
