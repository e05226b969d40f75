"""Shared fixtures: an isolated project root per test, a tiny synthetic catalog, the Prefect harness."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lensflow.core.runtime import OFFLINE_ENV

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
COLOURS = {"Red shirt": (200, 30, 30), "Green bag": (30, 170, 60), "Blue shoe": (40, 60, 210)}


def pytest_configure(config):
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="lensflow-prefect-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Settings rooted in a fresh temporary project (own DVC repo, MLflow sqlite, LanceDB dir)."""
    from lensflow.core.settings import get_settings

    monkeypatch.setenv("LENSFLOW_ROOT", str(tmp_path))
    monkeypatch.setenv(
        "LENSFLOW_LOADER_WORKERS", "0"
    )  # tiny catalogs: spawning decoder processes costs more than it saves
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def write_synthetic_catalog(data_dir: Path, per_category: int = 12, seed: int = 0, price: bool = False) -> pd.DataFrame:
    """A tiny catalog: three categories told apart by colour, noisy, non-square PNG and JPEG files."""
    rng = np.random.default_rng(seed)
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for ci, (category, colour) in enumerate(COLOURS.items()):
        for i in range(per_category):
            pid = f"p{ci}{i:03d}"
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (30, 40, 3)), 0, 255).astype(np.uint8)
            ext = "jpg" if i % 3 == 0 else "png"
            Image.fromarray(pixels).save(data_dir / "images" / f"{pid}.{ext}")
            split = "test" if i % 4 == 0 else "val" if i % 4 == 1 else "train"
            rows.append(
                {
                    "product_id": pid,
                    "title": f"{category} number {i}",
                    "category": category,
                    "image_path": f"images/{pid}.{ext}",
                    "split": split,
                }
                | ({"price": 10.0 + i} if price else {})
            )
    df = pd.DataFrame(rows)
    df.to_parquet(data_dir / "catalog.parquet", index=False)
    (data_dir / "categories.json").write_text(json.dumps(sorted(COLOURS)))
    return df


@pytest.fixture
def tiny_catalog(project):
    return write_synthetic_catalog(project.data_path)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceThread:
    """`lensflow serve`'s app under a real uvicorn server on 127.0.0.1, in a thread."""

    def __init__(self, settings, port: int | None = None):
        import threading

        import uvicorn

        from lensflow.serving.app import create_app

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the search service did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@contextmanager
def served_project(
    root: Path,
    env: dict[str, str],
    epochs: int = 3,
    price: bool = False,
    later_seeds: tuple[int, ...] = (),
    complements: dict[str, list[str]] | None = None,
):
    """A tiny project at `root` (settings from `env` on top of the defaults) with an auto-approved champion and,
    for each of `later_seeds`, a version deferred with approval=later; served by ServiceThread. `complements`
    is written as data/complements.json ("complete the look"). Yields (service, settings, catalog). Needs the
    Prefect harness."""
    from lensflow.core.settings import get_settings
    from lensflow.flows.retrain import RetrainParams, retrain
    from lensflow.tasks.promote import GateConfig

    mp = pytest.MonkeyPatch()
    for k, v in {"LENSFLOW_ROOT": str(root), "LENSFLOW_LOADER_WORKERS": "0", **env}.items():
        mp.setenv(k, v)
    get_settings.cache_clear()
    s = get_settings()
    catalog = write_synthetic_catalog(s.data_path, price=price)
    if complements is not None:
        (s.data_path / "complements.json").write_text(json.dumps(complements))
    base = dict(preset="tiny", epochs=epochs, batch_size=8, progress=False, gate=GateConfig(floors={}, tolerance=1.0))
    retrain(params=RetrainParams(**base, approval="auto-approve"))
    for seed in later_seeds:
        retrain(params=RetrainParams(**base, approval="later", seed=seed))
    try:
        with ServiceThread(s) as service:
            yield service, s, catalog
    finally:
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(), reason="Debian package dataset-fashion-mnist not installed (make test installs it)"
)


@pytest.fixture
def reviewers(project):
    """Register reviewers in the project's registry, as `lensflow reviewers add` does; returns {name: key}."""
    from lensflow.core.signoff import ReviewerKey

    def add(*names: str) -> dict:
        keys = {n: ReviewerKey.generate(n) for n in names}
        for key in keys.values():
            project.reviewer_store().add(key.public_text())
        return keys

    return add


@pytest.fixture
def reviewer():
    """Answer the next paused flow runs, in order, with the given approval forms (from a background thread,
    through Prefect's API, as a reviewer in the UI would). An answer's `key` (a ReviewerKey) signs the code
    for the run it answers, as `lensflow review code` does; `code` sends a given code instead (or the code a
    function of the pending review returns). Returns a
    function taking the list of answers."""
    import threading
    import time

    from lensflow.tasks.helpers.approval import answer_review, pending_reviews

    stop = threading.Event()
    answered: list[tuple[str, dict]] = []

    def run(answers: list[dict]) -> None:
        seen: set[tuple] = set()
        pending = list(answers)
        while pending and not stop.is_set():
            for review in pending_reviews():
                key = (review["flow_run_id"], review["pause_key"])
                if key not in seen:
                    seen.add(key)
                    answer = dict(pending[0])
                    signer = answer.pop("key", None)
                    if signer is not None and "code" not in answer:
                        answer["code"] = signer.sign(review["flow_run_id"], review["version"], answer["decision"])
                    if callable(answer.get("code")):
                        answer["code"] = answer["code"](review)
                    answer_review(review["flow_run_id"], **answer)
                    answered.append((review["flow_run_id"], pending.pop(0)))
                    break
            time.sleep(0.3)

    def start(answers: list[dict]) -> list:
        threading.Thread(target=run, args=(answers,), daemon=True).start()
        return answered

    yield start
    stop.set()
