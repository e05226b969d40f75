"""Crash safety: runs SIGKILLed at known points (tests/killer.py), then what survives.

A retrain killed while encoding images resumes and encodes only the rows it had not saved; a retrain
killed while building its index and a promotion killed between any two of its registry writes leave
the served model and index exactly as they were; the next run under the writer lock sets right what
the dead one left behind.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_synthetic_catalog

pytestmark = pytest.mark.crash
REPO = Path(__file__).resolve().parents[1]
LENSFLOW = str(Path(sys.executable).with_name("lensflow"))
RETRAIN = ("retrain", "--preset", "tiny", "--epochs", "20", "--auto-approve", "--json")


def lensflow(
    root: Path, *args: str, kill: tuple[str, ...] = (), expect: int | None = None, started=None
) -> subprocess.CompletedProcess:
    """`lensflow *args` in project `root`; with `kill`, under tests.killer (which SIGKILLs or pauses it
    midway), expecting a SIGKILL unless told `expect`; `started(proc)` is called while it runs. In its
    own session: the ephemeral Prefect server a CLI run starts outlives a SIGKILLed parent, so the
    whole group is killed afterwards."""
    cmd = [sys.executable, "-m", "tests.killer", *kill, "--", *args] if kill else [LENSFLOW, *args]
    env = {
        **os.environ,
        "LENSFLOW_ROOT": str(root),
        "PREFECT_HOME": str(root / ".prefect"),
        "LENSFLOW_LOADER_WORKERS": "0",
        "PYTHONPATH": str(REPO),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    expect = expect if expect is not None else -signal.SIGKILL if kill else 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            if started:
                started(proc)
            code = proc.wait(300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
    assert code == expect, f"lensflow {' '.join(args)} exited {code}, not {expect}:\n{done.stderr[-3000:]}"
    return done


def registry_state(settings) -> dict:
    """Every version's lensflow tags, the aliases, and the MLflow retrain runs' statuses."""
    from lensflow.core.registry import client, version_tags

    c = client(settings.tracking_uri)
    versions = {
        int(mv.version): version_tags(mv) for mv in c.search_model_versions(f"name='{settings.registered_model}'")
    }
    aliases = (
        {a: int(v) for a, v in c.get_registered_model(settings.registered_model).aliases.items()} if versions else {}
    )
    exp = c.get_experiment_by_name(settings.mlflow_experiment)
    runs = {r.info.run_id: r.info.status for r in c.search_runs([exp.experiment_id])} if exp else {}
    return {"versions": versions, "aliases": aliases, "runs": runs}


def served(root: Path) -> tuple[dict, list]:
    """What a shopper gets: `lensflow status` (champion, index table, version, md5) and a search's hits."""
    st = json.loads(lensflow(root, "status", "--json").stdout)
    st.pop("last_run")  # how the newest run ended (a killed one included): not what is served
    hits = json.loads(lensflow(root, "search", "--text", "Blue shoe", "--k", "5", "--json").stdout)
    return st, hits


def test_killed_retrains_resume_and_never_touch_what_is_served(project, tmp_path):
    root = project.root
    catalog = write_synthetic_catalog(project.data_path, per_category=100)  # 300 rows: three batches of 128

    # 1. killed while encoding images, after two parts of 128 rows were saved
    lensflow(
        root,
        *RETRAIN,
        kill=(
            "lensflow.tasks.helpers.features:iter_encoded",
            "yields=2",
            "lensflow.tasks.helpers.features:PART_ROWS=128",
        ),
    )
    state = registry_state(project)
    assert state["versions"] == {} and list(state["runs"].values()) == ["RUNNING"]  # died before registering anything
    parts = sorted(p.name for p in (project.path(project.cache_dir) / "features").glob("*/parts/*-*.npy"))
    assert parts == ["000000000000-000000000128.npy", "000000000128-000000000256.npy"]

    # 2. the next run (default part size) encodes only the 44 missing rows, and gets what an uninterrupted run gets
    first = lensflow(root, *RETRAIN)
    assert "resuming an interrupted run: 256 of 300 rows already encoded, 44 to go" in first.stderr
    summary = json.loads(first.stdout)
    assert summary["outcome"] == "promoted" and summary["version"] == 1 and summary["index"]["rows"] == len(catalog)
    state = registry_state(project)
    assert sorted(state["runs"].values()) == ["FINISHED", "KILLED"]  # the dead run's MLflow run is closed as KILLED
    from lensflow.models.encoder import build_encoder
    from lensflow.tasks.helpers.features import feature_cache_key, suffix_inputs

    split, fresh, hit = suffix_inputs(
        build_encoder("tiny", seed=0),
        catalog,
        project.data_path,
        tmp_path / "fresh-cache",
        summary["data_md5"],
        progress=False,
    )
    assert not hit
    key = feature_cache_key(summary["data_md5"], split.fingerprint)
    resumed = np.load(project.path(project.cache_dir) / "features" / key / "features.npy")
    np.testing.assert_allclose(resumed, fresh, rtol=0, atol=1e-6)

    # 3. killed while building v2's index (data written, full-text index not yet): nothing served changes
    before = served(root)
    lensflow(root, *RETRAIN, kill=("lancedb.table:LanceTable.create_fts_index", "calls=1"))
    state = registry_state(project)
    assert state["aliases"]["champion"] == 1 and state["versions"][2]["status"] == "building"
    assert (Path(project.lancedb_path) / f"{project.registered_model}-v2.lance").exists()  # the half-built table
    assert served(root) == before
    st, _ = before
    assert st["consistent"] and st["champion"]["version"] == 1

    # 4. the next run recovers: v2 failed and its half-built table deleted, the dead run KILLED; v3 is built and served
    third = lensflow(root, *RETRAIN)
    assert json.loads(third.stdout)["version"] == 3
    state = registry_state(project)
    assert state["versions"][2]["status"] == "failed" and "abandoned" in state["versions"][2]["failed_reason"]
    assert not (Path(project.lancedb_path) / f"{project.registered_model}-v2.lance").exists()
    assert sorted(state["runs"].values()) == ["FINISHED", "FINISHED", "KILLED", "KILLED"]
    st, _ = served(root)
    assert st["consistent"] and st["champion"]["version"] == state["aliases"]["champion"]


def test_promotion_killed_between_any_two_writes(project, tiny_catalog, prefect_harness, tmp_path):
    from lensflow.core.champion import status
    from lensflow.core.registry import CHAMPION, client, get_alias, version_tags
    from lensflow.core.settings import Settings
    from lensflow.flows.retrain import retrain
    from lensflow.tasks.promote import GateConfig, gate, promote
    from lensflow.tasks.recover import recover
    from tests.flows.test_retrain import tiny_params

    retrain(params=tiny_params())
    assert retrain(params=tiny_params(seed=1, approval="later"))["outcome"] == "awaiting-approval"
    db = Path(project.tracking_uri.removeprefix("sqlite:///"))
    out = tmp_path / "copies"
    out.mkdir()
    snapshot = out / "snapshot.db"
    shutil.copy(db, snapshot)
    script = (
        "import json, sys; from pathlib import Path; from tests.killer import promote_killed_at_each_write as p; "
        f"print(json.dumps(p(Path({str(snapshot)!r}), Path({str(out)!r}), {project.registered_model!r}, 2, 1)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    # every write but the last child's was interrupted by a SIGKILL; the last child finished the promotion
    assert codes[:-1] == [-signal.SIGKILL] * (len(codes) - 1) and codes[-1] == 0 and len(codes) >= 5
    alias_moved = []
    for k in range(1, len(codes) + 1):
        uri = f"sqlite:///{out / f'kill-before-write-{k}.db'}"
        s = Settings(root=project.root, mlflow_tracking_uri=uri)
        st = status(s)  # what the service and `lensflow status` see right after the crash
        assert st["consistent"], (k, st["problems"])
        alias_moved.append(st["champion"]["version"] == 2)
        c = client(uri)
        recover(c, project.registered_model, project.mlflow_experiment, project.lancedb_path)
        tags = {v: version_tags(c.get_model_version(project.registered_model, str(v))) for v in (1, 2)}
        champ = int(get_alias(c, project.registered_model, CHAMPION).version)
        assert [v for v, t in tags.items() if t["status"] == "champion"] == [champ], (k, tags)
        if champ == 1:  # killed before the alias moved: promote again, as a reviewer would
            assert tags[2]["status"] in ("awaiting-approval", "ready"), (k, tags[2])
            decision = gate({}, None, GateConfig(floors={}, metrics=[]), champion_version=1)
            assert promote(c, project.registered_model, 2, decision, "auto-approve") == "promoted"
            tags = {v: version_tags(c.get_model_version(project.registered_model, str(v))) for v in (1, 2)}
        assert tags[1]["status"] == "retired" and tags[1]["succeeded_by"] == "2", (k, tags[1])
        assert tags[2]["status"] == "champion" and tags[2]["approved_by"] == "policy:auto-approve", (k, tags[2])
        assert status(s)["consistent"] and status(s)["champion"]["version"] == 2
    # the alias moved exactly once, at one write: before it every copy serves v1, after it v2
    assert alias_moved == sorted(alias_moved) and 0 < alias_moved.index(True) < len(codes) - 1


def test_two_retrains_at_once_the_second_is_refused_and_changes_nothing(project, tmp_path):
    root = project.root
    write_synthetic_catalog(project.data_path)
    gate = tmp_path / "go"
    seen = {}

    def second_while_first_holds_the_lock(first: subprocess.Popen) -> None:
        deadline = time.monotonic() + 240
        while not gate.with_name("go.reached").exists():  # the first run is encoding images, under the lock
            assert first.poll() is None and time.monotonic() < deadline, "the first run never reached its pause"
            time.sleep(0.2)
        seen["first_pid"] = first.pid
        seen["second"] = lensflow(root, *RETRAIN, expect=1)
        seen["state"] = registry_state(project)
        gate.touch()

    first = lensflow(
        root,
        *RETRAIN,
        kill=("lensflow.tasks.helpers.features:iter_encoded", f"pause={gate}"),
        expect=0,
        started=second_while_first_holds_the_lock,
    )
    msg = seen["second"].stderr
    assert "retrain not started: another run is changing this project: retrain (flow run '" in msg, msg[-2000:]
    assert f"pid {seen['first_pid']} on " in msg and "Nothing was changed by this run" in msg
    # the second run created no MLflow run and no model version: only the first's run exists, still running
    assert seen["state"]["versions"] == {} and list(seen["state"]["runs"].values()) == ["RUNNING"]
    summary = json.loads(first.stdout)
    assert summary["outcome"] == "promoted" and summary["version"] == 1
    state = registry_state(project)
    assert list(state["versions"]) == [1] and list(state["runs"].values()) == ["FINISHED"]
