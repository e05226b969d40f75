"""Search quality of the fine-tuning strategies, side by side on the same catalog and eval set.

    python -m benchmarks.quality [--strategies heads,partial] [--epochs N]

Rows: frozen image-tower features (no training: the baseline), then each strategy trained by the
flow's own code (tasks/train.py) and evaluated by the flow's own code (tasks/evaluate.py) on the
test split, with the gallery = every catalog product (what is served). Prints a table and writes
JSON to benchmarks/results/quality-<time>.json. `full` is meant for a GPU machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from lensflow.core.dvc import dir_md5
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings
from lensflow.models.augment import ShopperAugment
from lensflow.models.device import resolve_device
from lensflow.models.encoder import build_encoder
from lensflow.models.train import embed_inputs, load_strategy
from lensflow.tasks.evaluate import Gallery, ShopperQueries, evaluate_vectors
from lensflow.tasks.helpers.catalog import load_catalog
from lensflow.tasks.helpers.features import suffix_inputs
from lensflow.tasks.shopper import SHOPPER_SEED, shopper_queries, shopper_rows
from lensflow.tasks.train import train_encoder

COLUMNS = (
    "image_precision_at_10",
    "image_recall_at_1",
    "text_precision_at_10",
    "zero_shot_accuracy",
    "shopper_recall_at_1",
    "shopper_recall_at_10",
    "shopper_mrr_at_10",
)


def frozen_row(preset: str, catalog, data_dir: Path, cache: Path, md5: str, device: str) -> dict:
    """No training: cosine on the image tower's pooled features (image and shopper queries only)."""
    enc = build_encoder(preset).to(device)
    t0 = time.perf_counter()
    split, feats, _ = suffix_inputs(enc, catalog, data_dir, cache, md5)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    rows = shopper_rows(catalog)
    _, shop, _ = suffix_inputs(enc, rows, data_dir, cache, md5, ShopperAugment(), SHOPPER_SEED)
    gallery = Gallery(
        catalog["product_id"].to_numpy(str),
        catalog["category"].to_numpy(str),
        catalog["split"].to_numpy(str),
        unit(feats),
    )
    queries = ShopperQueries(rows["product_id"].tolist(), unit(np.asarray(shop)), {}, 0)
    m = evaluate_vectors(None, gallery, queries).metrics  # no text space: image and shopper queries only
    return {"model": "frozen image features", "train_seconds": 0.0, "feature_seconds": time.perf_counter() - t0, **m}


def strategy_row(
    strategy: str,
    preset: str,
    catalog,
    data_dir: Path,
    cache: Path,
    md5: str,
    device: str,
    out: Path,
    epochs: int | None,
) -> dict:
    cfg = load_strategy(strategy, epochs=epochs)
    t0 = time.perf_counter()
    r = train_encoder(preset, catalog, data_dir, md5, cache, out / strategy, cfg, device=device)
    total = time.perf_counter() - t0
    split, inputs, _ = suffix_inputs(r.encoder, catalog, data_dir, cache, md5)
    gallery = Gallery(
        catalog["product_id"].to_numpy(str),
        catalog["category"].to_numpy(str),
        catalog["split"].to_numpy(str),
        embed_inputs(r.encoder, split.suffix, inputs).numpy(),
    )
    m = evaluate_vectors(r.encoder, gallery, shopper_queries(r.encoder, catalog, data_dir, cache, md5)).metrics
    return {
        "model": f"{strategy} ({r.params['epochs_run']} epochs, best {r.params['best_epoch'] + 1})",
        "train_seconds": r.seconds,
        "feature_seconds": r.feature_seconds,
        "total_seconds": total,
        "feature_cache_hit": r.feature_cache_hit,
        "config": cfg.as_dict(),
        **m,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default="heads,partial", help="comma-separated: heads, partial, full")
    ap.add_argument("--preset", default="lit-lite0-minilm")
    ap.add_argument("--epochs", type=int, default=None, help="override the strategies' maximum epochs")
    args = ap.parse_args()
    s = get_settings()
    offline_env(s.root)
    catalog = load_catalog(s.data_path)
    md5 = dir_md5(s.data_path)
    cache, device = s.path(s.cache_dir), resolve_device(s.device)
    out = cache / "benchmark-models"
    rows = [frozen_row(args.preset, catalog, s.data_path, cache, md5, device)]
    for strategy in [x.strip() for x in args.strategies.split(",") if x.strip()]:
        rows.append(strategy_row(strategy, args.preset, catalog, s.data_path, cache, md5, device, out, args.epochs))
    print(
        f"\ncatalog {len(catalog)} products ({(catalog['split'] == 'test').sum()} test queries), "
        f"data md5 {md5}, {describe()['summary']}"
    )
    header = (
        f"| {'model':34s} | "
        + " | ".join(c.replace("_at_", "@").replace("precision", "P").replace("recall", "R") for c in COLUMNS)
        + " | train s |"
    )
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 2))
    for r in rows:
        cells = [f"{r[c]:.3f}" if c in r else "-" for c in COLUMNS]
        print(f"| {r['model']:34s} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} |")
    save_results("quality", {"catalog_rows": len(catalog), "data_md5": md5, "preset": args.preset, "rows": rows})


if __name__ == "__main__":
    main()
