"""Load on `lensflow serve` (127.0.0.1) at 1, 8 and 32 concurrent clients: QPS, p50/p99 and errors for
text and photo search, each level bounded in requests and seconds, for each service variant in the same run
(benchmarks/serve_latency.py VARIANTS: `baseline`, the service before issue 22; `exact`, vectors in memory; `onnx`,
+ the text encoder on ONNX Runtime; `batched`, + concurrent queries batched: the default).
Writes benchmarks/results/serve-load-<time>.json."""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from benchmarks.machine import describe, save_results
from benchmarks.serve_latency import QUERIES, VARIANTS, champion_and_photos, running_service


def level(url: str, kind: str, clients: int, max_requests: int, max_seconds: float, pics: list[bytes]) -> dict:
    """`clients` threads, each with its own connection, until `max_requests` in all or `max_seconds`."""
    import httpx

    lock, lat, errors, sent = threading.Lock(), [], [], [0]
    deadline = time.perf_counter() + max_seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.perf_counter() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    n = sent[0]
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    r = (
                        c.post("/search/image", content=pics[n % len(pics)], headers={"Content-Type": "image/jpeg"})
                        if kind == "photo"
                        else c.get("/search/text", params={"q": QUERIES[n % len(QUERIES)]})
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError as exc:
                    ok, r = False, exc
                dt = time.perf_counter() - t0
                with lock:
                    (lat.append(dt) if ok else errors.append(str(getattr(r, "status_code", r))))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1000
    return {
        "kind": kind,
        "clients": clients,
        "requests": len(lat) + len(errors),
        "errors": len(errors),
        "seconds": round(wall, 1),
        "qps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=400, help="requests per level (bound)")
    ap.add_argument("--seconds", type=float, default=60, help="seconds per level (bound)")
    ap.add_argument("--kinds", default="text,photo", help="searches to load: text, photo")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"services to compare: {', '.join(VARIANTS)}")
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    s, champ, pics = champion_and_photos()
    rows = []
    for variant in args.variants.split(","):
        with running_service(args.port, VARIANTS[variant]) as (url, startup):
            level(url, "text", 2, 20, 30, pics)  # warm-up
            for kind in args.kinds.split(","):
                for n in [int(x) for x in args.clients.split(",")]:
                    rows.append({"variant": variant, **level(url, kind, n, args.requests, args.seconds, pics)})
                    print(rows[-1], flush=True)
    print(f"\n{champ.name} v{champ.version}, {champ.index['rows']} products; {describe()['summary']}")
    print("| service | search | clients | requests | errors | QPS | p50 ms | p99 ms | QPS / baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {(r["kind"], r["clients"]): r["qps"] for r in rows if r["variant"] == "baseline"}
    for r in rows:
        ratio = f"{r['qps'] / base[(r['kind'], r['clients'])]:.2f}x" if (r["kind"], r["clients"]) in base else ""
        print(
            f"| {r['variant']} | {r['kind']} | {r['clients']} | {r['requests']} | {r['errors']} "
            f"| {r['qps']} | {r['p50_ms']} | {r['p99_ms']} | {ratio} |"
        )
    save_results(
        "serve-load",
        {"model_version": champ.version, "rows_in_index": champ.index["rows"], "variants": VARIANTS, "rows": rows},
    )


if __name__ == "__main__":
    main()
