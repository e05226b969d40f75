"""The machine a benchmark ran on, recorded next to its figures."""

from __future__ import annotations

import os
import platform


def describe() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    info["summary"] = f"{info['cores']} cores ({cpu}), {info['memory_gib']} GiB" + (f", {gpu}" if gpu else ", no GPU")
    return info


def save_results(name: str, payload: dict) -> str:
    """Write benchmarks/results/<name>-<time>.json with the machine description; print and return the path."""
    import json
    import time
    from pathlib import Path

    results = Path(__file__).parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": describe(), **payload}, indent=2, default=str))
    print(f"written {path}")
    return str(path)
