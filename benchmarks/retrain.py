"""Wall time per stage of the retrain flow on the project's catalog, orchestration overhead shown.

Runs `lensflow retrain --approval later --json` (the real CLI and flow; `later` stops after the gate,
so what is served does not change) in the project at LENSFLOW_ROOT, by default with an empty feature
cache (`--warm` keeps it), as the first retrain on a new data version does. Reports each stage's
seconds, their sum, the flow's wall time (the difference is Prefect's orchestration plus the glue
between stages), and the process's wall time (the difference is interpreter start and imports).
Prints a table; writes benchmarks/results/retrain-<time>.json. Registers one model version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe, save_results
from lensflow.core.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", action="store_true", help="keep the feature cache (a retrain on unchanged data)")
    ap.add_argument("--strategy", default="heads")
    args = ap.parse_args()
    s = get_settings()
    if not (s.data_path / "catalog.parquet").exists():
        sys.exit(f"no catalog in {s.data_path}: run `lensflow data sample` first")
    env = dict(os.environ)
    cache = None
    if not args.warm:
        cache = Path(tempfile.mkdtemp(prefix="retrain-bench-cache-", dir=s.root))
        env["LENSFLOW_CACHE_DIR"] = str(cache)
    cmd = [
        str(Path(sys.executable).parent / "lensflow"),
        "retrain",
        "--approval",
        "later",
        "--strategy",
        args.strategy,
        "--json",
    ]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, cwd=s.root, capture_output=True, text=True)
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    process_s = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"retrain failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    stages = summary["stage_seconds"]
    flow_s = summary["wall_seconds"]
    staged = sum(stages.values())
    rows = [(k, v) for k, v in stages.items()]
    print(
        f"\n{describe()['summary']}; {summary['catalog_rows']:,} catalog rows, strategy {args.strategy}, "
        f"feature cache {'warm' if args.warm else 'cold'}; version {summary['version']} ({summary['outcome']})\n"
    )
    print("| stage | seconds | share of flow |")
    print("|---|---|---|")
    for k, v in rows:
        print(f"| {k} | {v:.1f} | {v / flow_s:.1%} |")
    print(
        f"| (fine_tune: tower features / head training) "
        f"| {summary['feature_seconds']:.1f} / {summary['train_seconds']:.1f} | |"
    )
    print(f"| sum of stages | {staged:.1f} | {staged / flow_s:.1%} |")
    print(f"| orchestration + glue (flow wall - stages) | {flow_s - staged:.1f} | {(flow_s - staged) / flow_s:.1%} |")
    print(f"| flow wall | {flow_s:.1f} | 100% |")
    print(f"| process wall (+ interpreter start, imports) | {process_s:.1f} | |")
    save_results(
        "retrain",
        {
            "strategy": args.strategy,
            "feature_cache": "warm" if args.warm else "cold",
            "catalog_rows": summary["catalog_rows"],
            "version": summary["version"],
            "outcome": summary["outcome"],
            "stage_seconds": stages,
            "feature_seconds": summary["feature_seconds"],
            "train_seconds": summary["train_seconds"],
            "epochs_run": summary["epochs_run"],
            "sum_of_stages_s": round(staged, 1),
            "flow_wall_s": flow_s,
            "process_wall_s": round(process_s, 1),
            "orchestration_s": round(flow_s - staged, 1),
            "metrics": summary["metrics"],
        },
    )


if __name__ == "__main__":
    main()
