"""Search latency of `lensflow serve` on the champion of the project in LENSFLOW_ROOT (one client, sequential).

Starts the real service (`lensflow serve`, a subprocess on 127.0.0.1), then times text, hybrid-text and
photo searches over HTTP, and the same searches in-process (encoder + LanceDB, no HTTP) as the baseline
in the same run. Prints a table; writes benchmarks/results/serve-latency-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings

QUERIES = [
    "ankle boots",
    "a summer dress",
    "running sneakers",
    "leather bag",
    "warm winter coat",
    "slim trousers",
    "striped t-shirt",
    "knitted pullover",
    "open sandals",
    "office shirt",
    "black boots",
    "denim pants",
]


def pct(xs: list[float]) -> dict:
    a = np.asarray(xs)
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def photos(s, n: int) -> list[bytes]:
    """JPEG bytes of test-split product photos, upscaled to 224 px as a phone upload would be."""
    import pandas as pd
    from PIL import Image

    catalog = pd.read_parquet(s.data_path / "catalog.parquet")
    rows = catalog[catalog["split"] == "test"].sample(n=n, random_state=0, replace=len(catalog) < n)
    out = []
    for p in rows["image_path"]:
        with Image.open(s.data_path / p) as im:
            buf = io.BytesIO()
            im.convert("RGB").resize((224, 224)).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def champion_and_photos(n: int = 50):
    """(settings, champion, n test photos as JPEG bytes) of the project at LENSFLOW_ROOT, offline env set."""
    from lensflow.core.champion import resolve_champion

    s = get_settings()
    offline_env(s.root)
    return s, resolve_champion(s), photos(s, n)


@contextmanager
def running_service(port: int):
    """`lensflow serve` as a subprocess on 127.0.0.1:port; yields (url, seconds until healthy)."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "lensflow"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 180:
                raise SystemExit("lensflow serve did not become healthy")
            time.sleep(0.5)
        yield url, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)


def time_http(url: str, n: int, pics: list[bytes]) -> dict:
    import httpx

    rows: dict[str, list[float]] = {"text": [], "hybrid text": [], "photo": []}
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(n + 5):
            for kind in rows:
                t0 = time.perf_counter()
                if kind == "photo":
                    r = c.post("/search/image", content=pics[i % len(pics)], headers={"Content-Type": "image/jpeg"})
                else:
                    r = c.get(
                        "/search/text",
                        params={"q": QUERIES[i % len(QUERIES)], "mode": "hybrid" if "hybrid" in kind else "vector"},
                    )
                dt = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                if i >= 5:  # warm-up excluded
                    rows[kind].append(dt)
    return {k: pct(v) for k, v in rows.items()}


def time_in_process(s, n: int, pics: list[bytes]) -> dict:
    from PIL import Image

    from lensflow.serving import search as S
    from lensflow.serving.served import load_champion

    served = load_champion(s)
    catalog = S.Catalog.of(served.table)
    rows: dict[str, list[float]] = {"text": [], "photo": []}
    localizer = served.encoder.localizer
    if localizer is not None:
        rows["photo: localize only"] = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        S.by_vector(served, catalog, S.text_vector(served, QUERIES[i % len(QUERIES)]), 10, 0, S.Filters())
        t1 = time.perf_counter()
        img = Image.open(io.BytesIO(pics[i % len(pics)])).convert("RGB")
        S.by_vector(served, catalog, S.image_vector(served, img), 10, 0, S.Filters())
        t2 = time.perf_counter()
        if localizer is not None:
            localizer.crop(img)
        t3 = time.perf_counter()
        if i >= 5:
            rows["text"].append((t1 - t0) * 1000)
            rows["photo"].append((t2 - t1) * 1000)
            if localizer is not None:
                rows["photo: localize only"].append((t3 - t2) * 1000)
    return {k: pct(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="timed requests per kind")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    s, champ, pics = champion_and_photos()
    with running_service(args.port) as (url, startup):
        http = time_http(url, args.requests, pics)
    local = time_in_process(s, args.requests, pics)
    rows = [{"path": f"HTTP {k}", **v} for k, v in http.items()] + [
        {"path": f"in-process {k} (baseline)", **v} for k, v in local.items()
    ]
    print(
        f"\n{champ.name} v{champ.version}, {champ.index['rows']} products, index {champ.index['table']}; "
        f"service ready in {startup:.1f} s; {describe()['summary']}"
    )
    print("| path | n | p50 ms | p95 ms | p99 ms | mean ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_ms']} |")
    save_results(
        "serve-latency",
        {
            "model_version": champ.version,
            "rows_in_index": champ.index["rows"],
            "startup_seconds": round(startup, 1),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
