"""Soak: `lensflow serve` (127.0.0.1) under sustained mixed load for --minutes, its memory sampled.

Starts the real service (`<venv>/bin/lensflow serve --host 127.0.0.1 --port <free port>`, a subprocess)
on the champion of the project in LENSFLOW_ROOT, warms it up, then runs --clients threads (one httpx
connection each) for --minutes: text, hybrid text, photo uploads, photo + text modifier, more-like-this,
and bad requests on purpose (oversized body, non-image bytes, wrong content type, truncated JPEG, empty
body or query, unknown product, out-of-range limit) that must be answered 4xx. An error is a 5xx, a
connection error or timeout, a good request not answered 200, or a bad one not answered 4xx. The
service's RSS (VmRSS of its process tree, from /proc) is sampled every --sample-s seconds; p50/p99
per minute show drift. Prints the tables; writes benchmarks/results/soak-<time>.json.
Exit status 1 when there was any error or the service exited.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from benchmarks.serve_latency import QUERIES, champion_and_photos

GOOD = {"text": 0.30, "hybrid": 0.15, "photo": 0.25, "photo+modifier": 0.05, "similar": 0.15}
BAD_SHARE = 0.10
KINDS = [*GOOD, "bad"]
MODIFIERS = ["dress", "boots", "red", "with long sleeves", "bag", "sneakers"]


# ---------------------------------------------------------------- the service and its memory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (from /proc/*/stat), root first."""
    kids: dict[int, list[int]] = defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids[ppid].append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of one process; {} when it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(val.split()[0])
    except OSError:
        return {}
    return out


def memory_sample(pid: int) -> dict | None:
    """RSS of the service's process tree (MB), its own peak RSS, threads, open fds; None when it is gone."""
    root = proc_status(pid)
    if not root:
        return None
    tree = process_tree(pid)
    rss_kb = root.get("VmRSS", 0) + sum(proc_status(p).get("VmRSS", 0) for p in tree[1:])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "hwm_mb": round(root.get("VmHWM", 0) / 1024, 1),
        "threads": root.get("Threads"),
        "fds": fds,
        "processes": len(tree),
    }


@contextmanager
def service(port: int, log_path: Path):
    """`lensflow serve --host 127.0.0.1 --port <port>` in its own session; yields (url, process, seconds until
    /health is ok). The process and anything it started are ended on the way out, whatever happened."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).parent / "lensflow"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                r = httpx.get(f"{url}/health", timeout=2)
                if r.status_code == 200 and r.json().get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"lensflow serve did not become healthy (exit {proc.poll()}); its log ends:\n{tail}")
            time.sleep(0.5)
        yield url, proc, time.perf_counter() - t0
    finally:
        stop_service(proc)
        log.close()


def stop_service(proc: subprocess.Popen) -> None:
    tree = process_tree(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in tree[1:]:  # children it started, if any outlived it
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:  # its own session's group (start_new_session): nothing of it is left behind
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


class Sampler(threading.Thread):
    """Samples the service's memory every `every` seconds, tagged with the phase and the requests done."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()
        self.phase, self.t0, self.done = "warm-up", time.perf_counter(), lambda: 0
        self.lock = threading.Lock()

    def take(self) -> dict | None:
        m = memory_sample(self.pid)
        if m is not None:
            with self.lock:
                s = {"t_s": round(time.perf_counter() - self.t0, 1), "phase": self.phase, "requests": self.done(), **m}
                self.samples.append(s)
            return s
        return None

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.take()


# ---------------------------------------------------------------- the load


def bad_requests(pics: list[bytes], max_upload: int) -> list[tuple[str, str, str, dict]]:
    """(name, method, path, httpx kwargs) of requests the service must answer 4xx."""
    jpeg = {"Content-Type": "image/jpeg"}
    return [
        ("oversized body", "POST", "/search/image", {"content": b"\xff" * (max_upload + 1), "headers": jpeg}),
        ("non-image bytes", "POST", "/search/image", {"content": b"this is not a photo\n" * 200, "headers": jpeg}),
        (
            "wrong content type",
            "POST",
            "/search/image",
            {"content": pics[0], "headers": {"Content-Type": "text/plain"}},
        ),
        ("truncated JPEG", "POST", "/search/image", {"content": pics[1][: len(pics[1]) // 3], "headers": jpeg}),
        ("empty body", "POST", "/search/image", {"content": b"", "headers": jpeg}),
        ("blank query", "GET", "/search/text", {"params": {"q": "   "}}),
        ("limit out of range", "GET", "/search/text", {"params": {"q": "boots", "limit": 1000}}),
        ("unknown product", "GET", "/products/no-such-product-0000/similar", {}),
    ]


class Load:
    """`clients` threads sending the mixed load until stop(); each completed request is recorded as
    (seconds since start, kind, detail, status or exception name, latency ms)."""

    def __init__(
        self,
        url: str,
        clients: int,
        pics: list[bytes],
        product_ids: list[str],
        categories: list[str],
        bad: list[tuple[str, str, str, dict]],
        seed: int = 0,
    ):
        self.url, self.clients, self.pics, self.ids, self.categories, self.bad = (
            url,
            clients,
            pics,
            product_ids,
            categories,
            bad,
        )
        self.seed, self.records, self.lock, self.halt = seed, [], threading.Lock(), threading.Event()
        self.t0 = time.perf_counter()
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(clients)]

    def done(self) -> int:
        return len(self.records)

    def start(self) -> Load:
        self.t0 = time.perf_counter()
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(120)

    def request(self, rng: random.Random, n: int) -> tuple[str, str, str, str, dict]:
        """(kind, detail, method, path, kwargs) of the next request."""
        r = rng.random()
        if r < BAD_SHARE:
            name, method, path, kw = self.bad[n % len(self.bad)]
            return "bad", name, method, path, kw
        r = (r - BAD_SHARE) / (1 - BAD_SHARE)
        acc = 0.0
        for kind, share in GOOD.items():  # noqa: B007 - the kind picked is the one the loop stops at
            acc += share / sum(GOOD.values())
            if r < acc:
                break
        params: dict = {"limit": rng.choice((10, 10, 10, 24, 50))}
        if rng.random() < 0.2 and self.categories:
            params["category"] = rng.choice(self.categories)
        if rng.random() < 0.1:
            params["offset"] = 10
        if kind in ("text", "hybrid"):
            params.update(q=QUERIES[n % len(QUERIES)], mode="hybrid" if kind == "hybrid" else "vector")
            return kind, "", "GET", "/search/text", {"params": params}
        if kind in ("photo", "photo+modifier"):
            if kind == "photo+modifier":
                params["modifier"] = rng.choice(MODIFIERS)
            return (
                kind,
                "",
                "POST",
                "/search/image",
                {"content": self.pics[n % len(self.pics)], "params": params, "headers": {"Content-Type": "image/jpeg"}},
            )
        return kind, "", "GET", f"/products/{rng.choice(self.ids)}/similar", {"params": params}

    def worker(self, i: int) -> None:
        import httpx

        rng = random.Random(self.seed * 1000 + i)
        n = i * 7919
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.halt.is_set():
                kind, detail, method, path, kw = self.request(rng, n)
                n += 1
                t0 = time.perf_counter()
                try:
                    status: int | str = c.request(method, path, **kw).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                t1 = time.perf_counter()
                with self.lock:
                    self.records.append((t1 - self.t0, kind, detail, status, (t1 - t0) * 1000))


def is_error(kind: str, status: int | str) -> bool:
    """5xx, connection error/timeout, a good request not answered 200, a bad one not answered 4xx."""
    if not isinstance(status, int):
        return True
    return not (400 <= status < 500) if kind == "bad" else status != 200


def pct(lat_ms: list[float]) -> tuple[float | None, float | None]:
    if not lat_ms:
        return None, None
    a = np.asarray(lat_ms)
    return round(float(np.percentile(a, 50)), 1), round(float(np.percentile(a, 99)), 1)


def per_window(records: list[tuple], seconds: float, window_s: float) -> list[dict]:
    """Requests, errors and p50/p99 of the good requests answered 200, per `window_s` of the run (those
    answered after the end, while the clients stop, count in the last window)."""
    n = max(1, int(np.ceil(seconds / window_s - 1e-9)))
    rows = []
    for w in range(n):
        recs = [
            r for r in records if w * window_s <= r[0] < (w + 1) * window_s or (w == n - 1 and r[0] >= n * window_s)
        ]
        ok = [r[4] for r in recs if r[1] != "bad" and r[3] == 200]
        p50, p99 = pct(ok)
        by_kind = {}
        for kind in GOOD:
            k50, k99 = pct([r[4] for r in recs if r[1] == kind and r[3] == 200])
            by_kind[kind] = {"p50_ms": k50, "p99_ms": k99}
        rows.append(
            {
                "window": w + 1,
                "from_s": w * window_s,
                "requests": len(recs),
                "errors": sum(is_error(r[1], r[3]) for r in recs),
                "p50_ms": p50,
                "p99_ms": p99,
                "by_kind": by_kind,
            }
        )
    return rows


def growth_per_10k(samples: list[dict]) -> float | None:
    """Least-squares slope of RSS (MB) against requests done, per 10,000 requests."""
    xs = np.asarray([s["requests"] for s in samples], dtype=float)
    ys = np.asarray([s["rss_mb"] for s in samples], dtype=float)
    if len(xs) < 2 or np.ptp(xs) == 0:
        return None
    return round(float(np.polyfit(xs, ys, 1)[0] * 10_000), 2)


def warm_up(url: str, pics: list[bytes]) -> tuple[list[str], list[str]]:
    """One request of each good kind (first-call costs), and the product ids and categories to use."""
    import httpx

    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as c:
        categories = c.get("/version").raise_for_status().json().get("categories") or []
        for q in QUERIES:
            for mode in ("vector", "hybrid"):
                hits = (
                    c.get("/search/text", params={"q": q, "mode": mode, "limit": 100})
                    .raise_for_status()
                    .json()["results"]
                )
                ids.extend(h["product_id"] for h in hits)
        for p in pics[:5]:
            c.post("/search/image", content=p, headers={"Content-Type": "image/jpeg"}).raise_for_status()
        c.post(
            "/search/image", content=pics[0], params={"modifier": "dress"}, headers={"Content-Type": "image/jpeg"}
        ).raise_for_status()
        c.get(f"/products/{ids[0]}/similar").raise_for_status()
    return sorted(set(ids)), categories


def photo_bytes(pics: list[bytes]) -> list[bytes]:
    """The test photos as uploads of a few sizes: the 224 px JPEGs, and some at 640 px (as a phone might send)."""
    from PIL import Image

    out = list(pics)
    for p in pics[:10]:
        with Image.open(io.BytesIO(p)) as im:
            buf = io.BytesIO()
            im.resize((640, 640)).save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10, help="length of the measured run")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (threads, one connection each)")
    ap.add_argument("--sample-s", type=float, default=5, help="seconds between memory samples")
    ap.add_argument("--warmup-s", type=float, default=30, help="seconds of the same load before the run (not counted)")
    ap.add_argument("--window-s", type=float, default=60, help="latency window (p50/p99 per window)")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    args = ap.parse_args()

    # SIGTERM/SIGHUP end the run like Ctrl-C: the `finally` below stops the service either way
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    s, champ, pics = champion_and_photos()
    pics = photo_bytes(pics)
    port = args.port or free_port()
    seconds = args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="lensflow-soak-"))
    log_path = tmp / "serve.log"
    print(
        f"{champ.name} v{champ.version}, {champ.index['rows']} products; {args.clients} clients for "
        f"{args.minutes:g} min after {args.warmup_s:g} s warm-up; service log {log_path}",
        flush=True,
    )

    load = None
    with service(port, log_path) as (url, proc, startup):
        sampler = Sampler(proc.pid, args.sample_s)
        sampler.start()
        try:
            sampler.take()
            rss_ready = sampler.samples[-1]["rss_mb"]
            ids, categories = warm_up(url, pics)
            bad = bad_requests(pics, s.max_upload_bytes)
            if args.warmup_s > 0:
                w = Load(url, args.clients, pics, ids, categories, bad, seed=1).start()
                time.sleep(args.warmup_s)
                w.stop()
                warm_errors = sum(is_error(r[1], r[3]) for r in w.records)
                print(f"warm-up: {len(w.records)} requests, {warm_errors} errors", flush=True)
            load = Load(url, args.clients, pics, ids, categories, bad)
            with sampler.lock:
                sampler.phase, sampler.t0, sampler.done = "run", time.perf_counter(), load.done
            start = sampler.take()
            load.start()
            exited = None
            next_report = args.window_s
            while (elapsed := time.perf_counter() - load.t0) < seconds:
                if proc.poll() is not None:
                    exited = proc.returncode
                    print(f"the service exited ({exited}) after {elapsed:.0f} s", flush=True)
                    break
                if elapsed >= next_report:
                    recs = [r for r in load.records if r[0] >= next_report - args.window_s]
                    p50, p99 = pct([r[4] for r in recs if r[1] != "bad" and r[3] == 200])
                    mem = sampler.samples[-1]
                    print(
                        f"{elapsed / 60:5.1f} min: {len(load.records)} requests, "
                        f"{sum(is_error(r[1], r[3]) for r in load.records)} errors; last window {len(recs)} requests, "
                        f"p50 {p50} ms, p99 {p99} ms; RSS {mem['rss_mb']} MB",
                        flush=True,
                    )
                    next_report += args.window_s
                time.sleep(min(1.0, max(0.05, seconds - elapsed)))
            load.stop()
            wall = time.perf_counter() - load.t0
            end = sampler.take() or sampler.samples[-1]
        finally:
            sampler.stop.set()
            if load is not None:
                load.halt.set()
        if exited is None and proc.poll() is not None:
            exited = proc.returncode

    log_text = log_path.read_text(errors="replace")
    records = load.records
    run_samples = [x for x in sampler.samples if x["phase"] == "run"]
    by_kind = {}
    for kind in KINDS:
        recs = [r for r in records if r[1] == kind]
        p50, p99 = pct([r[4] for r in recs if r[3] == 200])
        by_kind[kind] = {
            "requests": len(recs),
            "errors": sum(is_error(kind, r[3]) for r in recs),
            "statuses": dict(Counter(str(r[3]) for r in recs)),
            "p50_ms": p50,
            "p99_ms": p99,
        }
    bad_detail = {name: dict(Counter(str(r[3]) for r in records if r[1] == "bad" and r[2] == name)) for name, *_ in bad}
    errors = sum(v["errors"] for v in by_kind.values())
    expected_4xx = sum(1 for r in records if r[1] == "bad" and not is_error("bad", r[3]))
    windows = per_window(records, seconds, args.window_s)
    for w in windows:  # RSS at the end of each window
        upto = [x for x in run_samples if x["t_s"] <= w["from_s"] + args.window_s + 1e-6]
        w["rss_mb"] = upto[-1]["rss_mb"] if upto else None
    rss_max = max(x["rss_mb"] for x in run_samples)
    summary = {
        "minutes": round(wall / 60, 2),
        "clients": args.clients,
        "warmup_s": args.warmup_s,
        "startup_s": round(startup, 1),
        "requests": len(records),
        "rps": round(len(records) / wall, 1),
        "errors": errors,
        "bad_requests": by_kind["bad"]["requests"],
        "expected_4xx": expected_4xx,
        "rss_ready_mb": rss_ready,
        "rss_start_mb": start["rss_mb"],
        "rss_max_mb": rss_max,
        "rss_end_mb": end["rss_mb"],
        "peak_rss_hwm_mb": end["hwm_mb"],
        "rss_growth_mb_per_10k_fit": growth_per_10k(run_samples),
        "rss_growth_mb_per_10k_end_minus_start": round(
            (end["rss_mb"] - start["rss_mb"]) / max(1, len(records)) * 10_000, 2
        ),
        "threads_start_end": [start["threads"], end["threads"]],
        "fds_start_end": [start["fds"], end["fds"]],
        "p50_p99_first_window_ms": [windows[0]["p50_ms"], windows[0]["p99_ms"]],
        "p50_p99_last_window_ms": [windows[-1]["p50_ms"], windows[-1]["p99_ms"]],
        "service_exit": exited,
        "service_log_tracebacks": log_text.count("Traceback"),
    }

    print(f"\n{champ.name} v{champ.version}, {champ.index['rows']} products, port {port}; {describe()['summary']}")
    print("| measure | value |\n|---|---|")
    print(
        f"| duration | {summary['minutes']} min measured ({args.clients} clients, after {args.warmup_s:g} s warm-up) |"
    )
    print(
        f"| requests | {len(records)} ({summary['rps']}/s): "
        + ", ".join(f"{k} {v['requests']}" for k, v in by_kind.items())
        + " |"
    )
    print(f"| errors (5xx, connection, unexpected status) | {errors} |")
    print(f"| bad requests answered 4xx (expected) | {expected_4xx} of {by_kind['bad']['requests']} |")
    print(
        f"| RSS start (after warm-up) / max / end | {start['rss_mb']} / {rss_max} / {end['rss_mb']} MB "
        f"(ready, before warm-up: {rss_ready} MB; peak VmHWM {end['hwm_mb']} MB) |"
    )
    print(
        f"| RSS growth per 10k requests | {summary['rss_growth_mb_per_10k_fit']} MB "
        f"(fit over {len(run_samples)} samples); "
        f"{summary['rss_growth_mb_per_10k_end_minus_start']} MB (end - start) |"
    )
    print(f"| p50 / p99 first window | {windows[0]['p50_ms']} / {windows[0]['p99_ms']} ms |")
    print(f"| p50 / p99 last window | {windows[-1]['p50_ms']} / {windows[-1]['p99_ms']} ms |")
    print(
        f"| threads, open fds (start -> end) | {start['threads']} -> {end['threads']}, {start['fds']} -> {end['fds']} |"
    )
    print("\n| kind | requests | errors | statuses | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for k, v in by_kind.items():
        st = ", ".join(f"{c}: {n}" for c, n in sorted(v["statuses"].items()))
        print(
            f"| {k} | {v['requests']} | {v['errors']} | {st} "
            f"| {v['p50_ms'] if k != 'bad' else '-'} | {v['p99_ms'] if k != 'bad' else '-'} |"
        )
    print(
        f"\n| {args.window_s:g} s window | requests | errors | p50 ms | p99 ms | RSS MB at end |"
        "\n|---|---|---|---|---|---|"
    )
    for w in windows:
        print(f"| {w['window']} | {w['requests']} | {w['errors']} | {w['p50_ms']} | {w['p99_ms']} | {w['rss_mb']} |")
    if exited is not None or summary["service_log_tracebacks"]:
        print(
            f"service exit {exited}, {summary['service_log_tracebacks']} tracebacks in its log; "
            f"it ends:\n{log_text[-3000:]}"
        )
    save_results(
        "soak",
        {
            "model_version": champ.version,
            "rows_in_index": champ.index["rows"],
            "port": port,
            "args": vars(args),
            "summary": summary,
            "by_kind": by_kind,
            "bad_requests": bad_detail,
            "windows": windows,
            "memory_samples": sampler.samples,
        },
    )
    return 1 if errors or exited is not None else 0


if __name__ == "__main__":
    sys.exit(main())
