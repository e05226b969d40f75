"""The `lensflow` console command, run as a user runs it (subprocess, own project root)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import lensflow
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
    assert "nfiles: 73" in dvc  # 70 images + catalog.parquet + categories.json + complements.json


def test_retrain_status_search(tmp_path):
    nothing = run(tmp_path, "search", "--text", "shoe", "--json", check=False)
    assert nothing.returncode == 1 and "no 'champion' version" in nothing.stderr
    catalog = write_synthetic_catalog(tmp_path / "data")
    summary = json.loads(
        run(tmp_path, "retrain", "--preset", "tiny", "--epochs", "20", "--auto-approve", "--json").stdout
    )
    assert summary["outcome"] == "promoted" and summary["version"] == 1
    st = json.loads(run(tmp_path, "status", "--json").stdout)
    assert st["consistent"] is True and st["champion"]["index"]["rows"] == len(catalog)
    assert st["champion"]["metrics"]["image_precision_at_10"] == summary["metrics"]["image_precision_at_10"]
    hits = json.loads(run(tmp_path, "search", "--text", "Blue shoe", "--k", "4", "--json").stdout)
    assert len(hits) == 4 and all({"product_id", "title", "category", "score"} <= set(h) for h in hits)
    photo = tmp_path / "data" / catalog.loc[catalog["category"] == "Green bag", "image_path"].iloc[0]
    hits = json.loads(run(tmp_path, "search", "--image", str(photo), "--k", "3", "--json").stdout)
    assert hits[0]["category"] == "Green bag" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    described = json.loads(run(tmp_path, "describe", str(photo), "--json").stdout)
    assert described["category"] == "Green bag" and described["colours"][0]["name"] == "green"
    both = run(tmp_path, "search", "--json", check=False)
    assert both.returncode == 2 and "exactly one of --text or --image" in both.stderr
    # --box: only that part of the photo is searched (the bag on the right half of a two-product photo)

    shoe = tmp_path / "data" / catalog.loc[catalog["category"] == "Blue shoe", "image_path"].iloc[0]
    pair = Image.new("RGB", (80, 40))
    for x, path in ((0, shoe), (40, photo)):
        with Image.open(path) as im:
            pair.paste(im.convert("RGB").resize((40, 40)), (x, 0))
    pair.save(tmp_path / "pair.png")
    right = json.loads(
        run(
            tmp_path, "search", "--image", str(tmp_path / "pair.png"), "--box", "0.5,0,1,1", "--k", "3", "--json"
        ).stdout
    )
    left = json.loads(
        run(
            tmp_path, "search", "--image", str(tmp_path / "pair.png"), "--box", "0,0,40,40", "--k", "3", "--json"
        ).stdout
    )
    assert right[0]["category"] == "Green bag" and left[0]["category"] == "Blue shoe"
    bad = run(tmp_path, "search", "--image", str(photo), "--box", "1,2", check=False)
    assert bad.returncode == 1 and "four numbers" in bad.stderr
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
    server = subprocess.Popen(
        [LENSFLOW, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        assert r["model_version"] == 1 and [h["product_id"] for h in r["results"]] == [
            h["product_id"]
            for h in json.loads(run(tmp_path, "search", "--text", "Blue shoe", "--k", "4", "--json").stdout)
        ]
        # one search implementation: a photo ranks the same through the CLI and the API
        api = httpx.post(
            f"http://127.0.0.1:{port}/search/image",
            params={"limit": 5},
            content=photo.read_bytes(),
            headers={"content-type": "image/png"},
            timeout=30,
        ).json()["results"]
        cli = json.loads(run(tmp_path, "search", "--image", str(photo), "--k", "5", "--json").stdout)
        assert [h["product_id"] for h in api] == [h["product_id"] for h in cli]
        assert [h["score"] for h in api] == pytest.approx([h["score"] for h in cli], abs=1e-6)
        # the Python client, against this real `lensflow serve`: typed answers, the same rankings
        from lensflow.client import SearchClient, SearchError

        with SearchClient(f"http://127.0.0.1:{port}") as shop:
            assert shop.ready() and shop.version().model_version == 1
            ranked = [h["product_id"] for h in cli]
            with Image.open(photo) as im:
                by_pil = shop.photo(im.copy(), limit=5)
            for answer in (shop.photo(photo, limit=5), shop.photo(photo.read_bytes(), limit=5), by_pil):
                assert [h.product_id for h in answer.results] == ranked and answer.model_version == 1
            text = shop.text("Blue shoe", limit=4, mode="hybrid")
            assert len(text.results) == 4 and text.results[0].image_url.startswith("/images/")
            similar = shop.similar(ranked[0], limit=3)
            assert ranked[0] not in [h.product_id for h in similar.results] and len(similar.results) == 3
            rec = shop.recommend(viewed=ranked[:2], limit=3)
            assert not {h.product_id for h in rec.results} & set(ranked[:2]) and len(rec.results) == 3
            described = shop.describe(photo)
            assert described.category == cli[0]["category"] and described.similar
            assert shop.complete_the_look(ranked[0]).product_id == ranked[0]
            with pytest.raises(SearchError) as missing:
                shop.similar("no-such-product")
            assert missing.value.status == 404 and "no-such-product" in missing.value.message
            assert missing.value.request_id
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    # JSON logs: the access log has a line per request, with the id the client was given
    access = [json.loads(line) for line in out.splitlines() if line.startswith("{") and "lensflow.access" in line]
    assert any(a["request_id"] == missing.value.request_id and a["status"] == 404 for a in access), out[-2000:]
    assert run(tmp_path, "--version").stdout.strip() == f"lensflow {lensflow.__version__}"


def _user_catalog(src: Path) -> pd.DataFrame:
    """A user's own files: catalog.csv (own ids, no split column) and photos in a sub-folder, with one
    transparent PNG, one photo that is not there and one whose name differs in case."""
    import numpy as np

    df = write_synthetic_catalog(src, per_category=20).drop(columns=["split"])
    (src / "catalog.parquet").unlink()
    (src / "categories.json").unlink()
    df["product_id"] = [f"SKU {i:04d}" for i in range(len(df))]
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[5:25, 10:30] = (40, 60, 210, 255)
    Image.fromarray(rgba, "RGBA").save(src / "images" / "clear.png")
    df.loc[0, "image_path"] = "images/clear.png"
    df.loc[1, "image_path"] = "images/gone.png"
    (src / df.loc[2, "image_path"]).rename(src / df.loc[2, "image_path"].upper().replace("IMAGES/", "images/"))
    df.to_csv(src / "catalog.csv", index=False)
    return df


def test_own_catalog_import_is_protected_gated_and_scriptable(tmp_path):
    """From a user's CSV and photos to a champion: import, no data loss, the gate's way out, exit codes."""
    src, root = tmp_path / "shop", tmp_path / "project"
    root.mkdir()
    user = _user_catalog(src)
    out = run(root, "data", "import", str(src / "catalog.csv"), "--images", str(src))
    data = root / "data"
    assert f"read      {len(user)} products; {len(user) - 2} photos copied" in out.stdout
    assert "quarantine 2 of 60 rows" in out.stdout and "'images/gone.png' is not in" in out.stdout
    assert "file names are case-sensitive" in out.stdout and "commit data.dvc" in out.stdout
    assert (root / "data.dvc").exists() and (data / "catalog.csv").exists() and not (data / "catalog.parquet").exists()
    assert json.loads((data / "categories.json").read_text()) == sorted(set(user["category"]))
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))

    # the data-loss bug: neither command may touch the user's catalog
    for args in (["data", "sample", "--limit", "50"], ["retrain", "--limit", "50", "--auto-approve"]):
        refused = run(root, *args, check=False)
        assert refused.returncode == 1 and "lensflow did not create" in refused.stderr, refused.stderr
        assert f"{data / 'images'}/ ({len(user) - 2} files)" in refused.stderr
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == before
    again = run(root, "data", "import", str(src / "catalog.csv"), "--images", str(src), check=False)
    assert again.returncode == 1 and "--force" in again.stderr

    # a first model that misses a floor: exit 3, stdout only JSON, and the exact command that accepts it
    rejected = run(
        root,
        "retrain",
        "--preset",
        "tiny",
        "--epochs",
        "3",
        "--auto-approve",
        "--json",
        "--floor",
        "image_precision_at_10=1.01",
        check=False,
    )
    assert rejected.returncode == 3, rejected.stderr
    summary = json.loads(rejected.stdout)
    assert summary["outcome"] == "rejected" and summary["quarantined_rows"] == 2
    command = rejected.stderr.split("accept it as it is (no retraining): ")[1].splitlines()[0].split()
    assert command[:5] == ["lensflow", "promote", "--version", "1", "--auto-approve"] and command[5] == "--floor"
    st = run(root, "status").stdout
    assert "no champion yet: the last run registered v1, which ended rejected" in st and "next step" in st
    assert "retrain --auto-approve` first" not in st
    assert json.loads(run(root, "status", "--json").stdout)["last_run"]["status"] == "rejected"
    accepted = run(root, "promote", *command[2:])
    assert "v1 is now the champion" in accepted.stdout
    assert json.loads(run(root, "status", "--json").stdout)["champion"]["version"] == 1
    bad = run(root, "retrain", "--floor", "image_precison_at_10=0.3", "--auto-approve", check=False)
    assert bad.returncode == 2 and "METRIC=VALUE" in bad.stderr
    assert "lensflow serve" in run(root, "search", "--help").stdout


@needs_fashion_mnist
def test_retrain_limit_json_prints_only_json(tmp_path):
    out = run(
        tmp_path,
        "retrain",
        "--limit",
        "60",
        "--preset",
        "tiny",
        "--epochs",
        "2",
        "--auto-approve",
        "--json",
        "--floor",
        "image_precision_at_10=none",
        "--floor",
        "text_precision_at_10=none",
    )
    assert json.loads(out.stdout)["catalog_rows"] == 60 and "sample catalog: 60 products" in out.stderr


def test_exit_codes_tell_a_script_what_happened():
    import typer

    from lensflow.cli import _end

    for outcome, code in (("promoted", 0), ("rejected", 3), ("superseded", 3), ("awaiting-approval", 4)):
        with pytest.raises(typer.Exit) as out:
            _end({"outcome": outcome, "version": 2, "gate": {}})
        assert out.value.exit_code == code
