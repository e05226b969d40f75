"""Search latency of `lensflow serve` on the champion of the project in LENSFLOW_ROOT (one client, sequential).

Starts the real service (`lensflow serve`, a subprocess on 127.0.0.1) once per variant (VARIANTS: by default
`baseline`, the service before issue 22: LanceDB's index, the torch text encoder, one request at a time; and
`batched`, the default service), and times text, hybrid-text and photo searches and /health over HTTP. In the
same run, the parts of one request in-process: text encode (torch and ONNX Runtime), the in-memory exact search,
the LanceDB search, photo decode + locate + encode, localization alone. The text limit is encode + exact search +
the /health round trip. Prints a table; writes benchmarks/results/serve-latency-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings

VARIANTS = {  # name -> the environment `lensflow serve` runs with, each adding one step of issue 22
    "baseline": {
        "LENSFLOW_EXACT_SEARCH_MAX_ROWS": "0",
        "LENSFLOW_TEXT_RUNTIME": "torch",
        "LENSFLOW_SERVE_MAX_BATCH": "1",
    },
    "exact": {"LENSFLOW_TEXT_RUNTIME": "torch", "LENSFLOW_SERVE_MAX_BATCH": "1"},  # vectors in memory
    "onnx": {"LENSFLOW_SERVE_MAX_BATCH": "1"},  # + the text encoder on ONNX Runtime
    "batched": {},  # + concurrent queries batched: the default service
}
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
def running_service(port: int, env: dict | None = None):
    """`lensflow serve` as a subprocess on 127.0.0.1:port (with `env` added to this environment); yields (url,
    seconds until healthy)."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "lensflow"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
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

    rows: dict[str, list[float]] = {"text": [], "hybrid text": [], "photo": [], "/health": []}
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(n + 5):
            for kind in rows:
                t0 = time.perf_counter()
                if kind == "/health":
                    r = c.get("/health")
                elif kind == "photo":
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
    """The parts of one request, in this process: encoders, both searches (FACET_POOL candidates, as a request
    reads for its facets), photo decode + locate + encode, and localization alone."""
    from lensflow.core.index import best_of
    from lensflow.models.onnx_text import onnx_text_tower
    from lensflow.serving import search as S
    from lensflow.serving.served import load_champion

    served = load_champion(s)
    catalog = S.Catalog.of(served.table, s.exact_search_max_rows)
    if catalog.exact is None:
        raise SystemExit(f"the index has more than LENSFLOW_EXACT_SEARCH_MAX_ROWS={s.exact_search_max_rows} rows")
    cols = catalog.ranked_columns
    torch_encode = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        S.text_vector(served, QUERIES[i % len(QUERIES)])
        if i >= 5:
            torch_encode.append((time.perf_counter() - t0) * 1000)
    fast = onnx_text_tower(served.encoder.text_tower)
    if fast is None:
        raise SystemExit("the champion's text tower does not run on ONNX Runtime (see the log)")
    served.encoder.text_tower = fast
    rows: dict[str, list[float]] = {
        "text encode (ONNX Runtime)": [],
        "exact search, in memory": [],
        "LanceDB search (IVF_PQ)": [],
        "photo decode + locate + encode": [],
    }
    localizer = served.encoder.localizer
    if localizer is not None:
        rows["localization alone"] = []
    for i in range(n + 5):
        t = [time.perf_counter()]
        vec = S.text_vector(served, QUERIES[i % len(QUERIES)])
        t.append(time.perf_counter())
        catalog.exact.top(vec, S.FACET_POOL)
        t.append(time.perf_counter())
        best_of(served.table, vec, S.FACET_POOL, None, columns=cols, meta=catalog.meta)
        t.append(time.perf_counter())
        img = S.decode_image(pics[i % len(pics)], s.max_image_pixels, s.max_image_side, S.photo_side(served.encoder))
        S.image_vector(served, img)
        t.append(time.perf_counter())
        if localizer is not None:
            localizer.crop(img)
            t.append(time.perf_counter())
        if i >= 5:
            for k, a, b in zip(rows, t, t[1:]):
                rows[k].append((b - a) * 1000)
    return {"text encode (torch)": pct(torch_encode), **{k: pct(v) for k, v in rows.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="timed requests per kind")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--variants", default="baseline,batched", help=f"services to time: {', '.join(VARIANTS)}")
    args = ap.parse_args()
    s, champ, pics = champion_and_photos()
    http, startup = {}, {}
    for label in args.variants.split(","):
        with running_service(args.port, VARIANTS[label]) as (url, startup[label]):
            http[label] = time_http(url, args.requests, pics)
    local = time_in_process(s, args.requests, pics)
    rows = [{"path": f"HTTP {k}, {label}", **v} for label, kinds in http.items() for k, v in kinds.items()] + [
        {"path": f"in-process {k}", **v} for k, v in local.items()
    ]
    last = list(http)[-1]
    limit = local["text encode (ONNX Runtime)"]["p50_ms"] + local["exact search, in memory"]["p50_ms"]
    limit += http[last]["/health"]["p50_ms"]
    photo_limit = local["photo decode + locate + encode"]["p50_ms"] + local["exact search, in memory"]["p50_ms"]
    photo_limit += http[last]["/health"]["p50_ms"]
    ratios = {
        "text_limit_ms": round(limit, 2),
        "text_p50_over_limit": {k: round(v["text"]["p50_ms"] / limit, 2) for k, v in http.items()},
        "text_p99_over_p50": {k: round(v["text"]["p99_ms"] / v["text"]["p50_ms"], 2) for k, v in http.items()},
        "photo_limit_ms": round(photo_limit, 2),
        "photo_p50_over_limit": {k: round(v["photo"]["p50_ms"] / photo_limit, 2) for k, v in http.items()},
        "photo_p99_over_p50": {k: round(v["photo"]["p99_ms"] / v["photo"]["p50_ms"], 2) for k, v in http.items()},
    }
    print(
        f"\n{champ.name} v{champ.version}, {champ.index['rows']} products, index {champ.index['table']}; "
        f"service ready in {startup[last]:.1f} s; {describe()['summary']}"
    )
    print("| path | n | p50 ms | p95 ms | p99 ms | mean ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['mean_ms']} |")
    print(
        f"text limit (ONNX encode + exact search + /health) {limit:.2f} ms; HTTP text p50 / limit: "
        + ", ".join(f"{k} {v}" for k, v in ratios["text_p50_over_limit"].items())
    )
    print(
        f"photo limit (decode + locate + encode + exact search + /health) {photo_limit:.2f} ms; HTTP photo p50 / "
        "limit: " + ", ".join(f"{k} {v}" for k, v in ratios["photo_p50_over_limit"].items())
    )
    save_results(
        "serve-latency",
        {
            "model_version": champ.version,
            "rows_in_index": champ.index["rows"],
            "startup_seconds": {k: round(v, 1) for k, v in startup.items()},
            "rows": rows,
            **ratios,
        },
    )


if __name__ == "__main__":
    main()
