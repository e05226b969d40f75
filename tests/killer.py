"""Die (or pause) midway on purpose: run a `lensflow` command in this process with one function patched to
SIGKILL the process at a chosen call, so the crash-safety tests kill a run at a known point
(a real SIGKILL: no exception, no `finally`, no atexit; whatever was on disk stays as it was).

    python -m tests.killer lensflow.tasks.helpers.features:iter_encoded yields=2 \
        [lensflow.tasks.helpers.features:PART_ROWS=128] -- retrain ...
    python -m tests.killer lancedb.table:LanceTable.create_fts_index calls=1 -- retrain ...
    python -m tests.killer lensflow.tasks.helpers.features:iter_encoded pause=/tmp/go -- retrain ...  (waits)
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _resolve(target: str):
    module, _, path = target.partition(":")
    owner = importlib.import_module(module)
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    return owner, attr


def kill_on_call(targets: str | list[str], n: int) -> None:
    """`module:attr` (attr may be `Class.method`), or several sharing one count: the n-th call (1-based)
    among them kills the process before it runs."""
    seen = [0]
    for target in [targets] if isinstance(targets, str) else targets:
        owner, attr = _resolve(target)

        def wrapper(*args, _original=getattr(owner, attr), **kwargs):
            seen[0] += 1
            if seen[0] == n:
                die()
            return _original(*args, **kwargs)

        setattr(owner, attr, functools.wraps(getattr(owner, attr))(wrapper))


def kill_after_yields(target: str, n: int) -> None:
    """`module:generator_function`: the process dies when its consumer asks for item n+1 (n items were used)."""
    owner, attr = _resolve(target)
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        for i, item in enumerate(original(*args, **kwargs)):
            if i == n:
                die()
            yield item

    setattr(owner, attr, wrapper)


def pause_on_call(target: str, gate: str) -> None:
    """`module:attr`: its first call writes `<gate>.reached`, then waits until the file `gate` exists."""
    owner, attr = _resolve(target)
    original, gate_file = getattr(owner, attr), Path(gate)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if not gate_file.exists():
            gate_file.with_name(gate_file.name + ".reached").touch()
            while not gate_file.exists():
                time.sleep(0.1)
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


def promote_killed_at_each_write(db: Path, out: Path, name: str, version: int, champion: int) -> list[int]:
    """Copy the registry `db` once per MLflow write of an auto-approved promotion of `version` over
    `champion`, and in a forked child promote on copy k, SIGKILLed just before its k-th write
    (k = 1, 2, ... until a child finishes). Returns the children's exit codes (-9: killed), in k order.
    The parent never opens the database, so no connection crosses a fork."""
    from mlflow.tracking import MlflowClient

    from lensflow.tasks.promote import GateConfig, gate, promote

    codes: list[int] = []
    while not codes or codes[-1] == -signal.SIGKILL:
        k = len(codes) + 1
        copy = out / f"kill-before-write-{k}.db"
        shutil.copy(db, copy)
        pid = os.fork()
        if pid == 0:
            try:
                kill_on_call(
                    [
                        f"mlflow.tracking:MlflowClient.{m}"
                        for m in ("set_model_version_tag", "set_registered_model_alias")
                    ],
                    k,
                )
                c = MlflowClient(tracking_uri=f"sqlite:///{copy}", registry_uri=f"sqlite:///{copy}")
                decision = gate({}, None, GateConfig(floors={}, metrics=[]), champion_version=champion)
                promote(c, name, version, decision, "auto-approve")
                os._exit(0)
            except BaseException:
                import traceback

                traceback.print_exc()
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        if k > 100:
            raise RuntimeError("more than 100 writes in one promotion")
    return codes


def main(argv: list[str]) -> None:
    if "--" not in argv or len(argv) < 4:
        raise SystemExit(__doc__)
    target, when, *constants = argv[: argv.index("--")]
    for assignment in constants:  # module:NAME=int, e.g. a smaller part size so that a tiny run has several
        name, _, value = assignment.partition("=")
        owner, attr = _resolve(name)
        setattr(owner, attr, int(value))
    kind, _, arg = when.partition("=")
    if kind == "pause":
        pause_on_call(target, arg)
    else:
        {"calls": kill_on_call, "yields": kill_after_yields}[kind](target, int(arg))
    from lensflow.cli import app

    app(argv[argv.index("--") + 1 :])


if __name__ == "__main__":
    main(sys.argv[1:])
