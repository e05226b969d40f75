"""Search the champion with a folder of labelled photos taken apart from training: do shoppers' own
photos find their product?

    python -m benchmarks.photo_queries DIR     # DIR/truth.csv: query_file,product_id[,category]

Each photo goes through the same path as `lensflow search --image` (decode with EXIF and alpha, the
champion's encoder, its index), one at a time. Prints each query's rank and, as the baseline in the same
run, what a random ranking would score: instance R@1 / R@10 and, with a category column, category P@10.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from benchmarks.machine import save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings


def main(folder: Path) -> None:
    from lensflow.serving.search import search
    from lensflow.serving.served import load_champion

    s = get_settings()
    offline_env(s.root)
    served = load_champion(s)
    rows = list(csv.DictReader(open(folder / "truth.csv", newline="", encoding="utf-8")))
    n_products = served.table.count_rows()
    per_query, cat_p10 = [], []
    for r in rows:
        hits = search(served, image=folder / r["query_file"], k=10)
        ids = [h["product_id"] for h in hits]
        rank = ids.index(r["product_id"]) + 1 if r["product_id"] in ids else None
        if r.get("category"):
            cat_p10.append(sum(h["category"] == r["category"] for h in hits) / 10)
        per_query.append(
            {"query": r["query_file"], "product_id": r["product_id"], "rank": rank, "top1": hits[0]["title"]}
        )
        print(
            f"{r['query_file']:<14} {r['product_id']:<12} rank {rank or '>10':<4} "
            f"top-1 {hits[0]['product_id']} {hits[0]['title']}"
        )
    n = len(rows)
    metrics = {
        "recall_at_1": sum(q["rank"] == 1 for q in per_query) / n,
        "recall_at_10": sum(q["rank"] is not None for q in per_query) / n,
    }
    chance = {"recall_at_1": 1 / n_products, "recall_at_10": min(1.0, 10 / n_products)}
    if cat_p10:
        metrics["category_precision_at_10"] = sum(cat_p10) / len(cat_p10)
    print(f"\n{n} photos, {n_products} products, champion v{served.champion.version}")
    print(f"{'metric':<26} {'champion':>9} {'random':>9}")
    for k, v in metrics.items():
        print(f"{k:<26} {v:>9.3f} " + (f"{chance[k]:>9.3f}" if k in chance else f"{'-':>9}"))
    save_results(
        "photo-queries",
        {
            "folder": folder.name,
            "queries": n,
            "products": n_products,
            "model_version": served.champion.version,
            "metrics": metrics,
            "random": chance,
            "per_query": per_query,
        },
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.photo_queries DIR  (DIR/truth.csv: query_file,product_id[,category])")
    main(Path(sys.argv[1]))
