"""The `lensflow` console command, run as a user runs it (subprocess, own project root)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import needs_fashion_mnist, write_synthetic_catalog

pytestmark = pytest.mark.cli
LENSFLOW = str(Path(sys.executable).with_name("lensflow"))


def run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LENSFLOW_ROOT": str(root), "PREFECT_HOME": str(root / ".prefect")}
    proc = subprocess.run([LENSFLOW, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"lensflow {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@needs_fashion_mnist
def test_data_sample_builds_a_dvc_tracked_catalog(tmp_path):
    out = run(tmp_path, "data", "sample", "--limit", "70")
    assert "70 products" in out.stdout
    df = pd.read_parquet(tmp_path / "data" / "catalog.parquet")
    assert len(df) == 70 and set(df["split"]) == {"train", "val", "test"}
    dvc = (tmp_path / "data.dvc").read_text()
    assert "nfiles: 72" in dvc  # 70 images + catalog.parquet + categories.json


def test_retrain_status_search(tmp_path):
    nothing = run(tmp_path, "search", "--text", "shoe", "--json", check=False)
    assert nothing.returncode == 1 and "no 'champion' version" in nothing.stderr
    catalog = write_synthetic_catalog(tmp_path / "data")
    summary = json.loads(run(tmp_path, "retrain", "--preset", "tiny", "--epochs", "20", "--auto-approve", "--json").stdout)
    assert summary["outcome"] == "promoted" and summary["version"] == 1
    st = json.loads(run(tmp_path, "status", "--json").stdout)
    assert st["consistent"] is True and st["champion"]["index"]["rows"] == len(catalog)
    assert st["champion"]["metrics"]["image_precision_at_10"] == summary["metrics"]["image_precision_at_10"]
    hits = json.loads(run(tmp_path, "search", "--text", "Blue shoe", "--k", "4", "--json").stdout)
    assert len(hits) == 4 and [set(h) for h in hits] == [{"product_id", "title", "category", "score"}] * 4
    photo = tmp_path / "data" / catalog.loc[catalog["category"] == "Green bag", "image_path"].iloc[0]
    hits = json.loads(run(tmp_path, "search", "--image", str(photo), "--k", "3", "--json").stdout)
    assert hits[0]["category"] == "Green bag" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    both = run(tmp_path, "search", "--json", check=False)
    assert both.returncode == 2 and "exactly one of --text or --image" in both.stderr
    # the catalog did not change: a reindex has nothing to do
    assert json.loads(run(tmp_path, "reindex", "--json").stdout)["outcome"] == "unchanged"
    # a reviewer's approval needs a Prefect server: refused up front, nothing trained
    review = run(tmp_path, "retrain", "--preset", "tiny", check=False)
    assert review.returncode == 2 and "Prefect server" in review.stderr and "--auto-approve" in review.stderr
    # `lensflow serve` serves the champion over HTTP on 127.0.0.1
    import httpx

    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "LENSFLOW_ROOT": str(tmp_path), "PREFECT_HOME": str(tmp_path / ".prefect")}
    server = subprocess.Popen([LENSFLOW, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = httpx.get(f"http://127.0.0.1:{port}/search/text", params={"q": "Blue shoe", "limit": 4}, timeout=30).json()
        assert r["model_version"] == 1 and [h["product_id"] for h in r["results"]] == [h["product_id"] for h in
            json.loads(run(tmp_path, "search", "--text", "Blue shoe", "--k", "4", "--json").stdout)]
    finally:
        server.terminate()
        server.wait(30)
