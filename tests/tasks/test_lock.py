"""The project's writer lock: one writer at a time, a clear message for the second, gone with its holder."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lensflow.tasks.lock import RunInProgress, project_lock


def test_second_writer_is_refused_naming_the_first(tmp_path):
    with project_lock(tmp_path, "retrain") as holder:
        assert holder["pid"] == os.getpid() and holder["what"] == "retrain"
        with pytest.raises(RunInProgress) as err, project_lock(tmp_path, "reindex"):
            pass
        msg = str(err.value)
        assert (
            msg.startswith("reindex not started")
            and f"retrain (pid {os.getpid()} on " in msg
            and "Nothing was changed" in msg
        )
    with project_lock(tmp_path, "reindex") as holder:  # released on exit
        assert holder["what"] == "reindex"


def test_released_when_the_body_raises(tmp_path):
    with pytest.raises(ZeroDivisionError), project_lock(tmp_path, "retrain"):
        raise ZeroDivisionError
    with project_lock(tmp_path, "retrain"):
        pass


def test_waiting_writer_gets_the_lock_when_the_holder_finishes(tmp_path):
    held, said = threading.Event(), []

    def hold():
        with project_lock(tmp_path, "retrain"):
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    with project_lock(tmp_path, "promotion", wait_s=30, log=said.append) as holder:
        assert holder["what"] == "promotion" and not t.is_alive()
    assert len(said) == 1 and said[0].startswith("promotion waits for retrain (pid ")
    with pytest.raises(RunInProgress, match=r"waited 1 s"), project_lock(tmp_path, "retrain"):
        with project_lock(tmp_path, "promotion", wait_s=1):
            pass


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    script = (
        "import sys, time; from pathlib import Path; from lensflow.tasks.lock import project_lock\n"
        f"with project_lock(Path({str(tmp_path)!r}), 'retrain'):\n    print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunInProgress, match=f"retrain \\(pid {proc.pid} on "), project_lock(tmp_path, "retrain"):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with project_lock(tmp_path, "retrain") as holder:  # the kernel dropped the dead holder's lock
            assert holder["pid"] == os.getpid()
    finally:
        proc.kill()
