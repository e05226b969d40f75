"""Incremental reindex vs a full embed + index build, on the project in LENSFLOW_ROOT (it changes data/!).

Applies a catalog change to data/ (default: 1% products added, 0.5% with a new photo, 0.5% removed),
runs the reindex flow, then in the same run embeds the whole new catalog with the champion and builds a
fresh index (the baseline). Reports both wall times, the recall@10 vs exact of both indexes, and checks
that added products are found and removed ones never returned. Writes benchmarks/results/reindex-<time>.json.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env, tune_malloc
from lensflow.core.settings import get_settings
from lensflow.core.storage import sql_list
from lensflow.models.device import resolve_device


def mutate(data_dir: Path, added: float, changed: float, removed: float, seed: int = 0) -> dict:
    """Change the catalog in place; returns the ids of each kind."""
    df = pd.read_parquet(data_dir / "catalog.parquet")
    rng = np.random.default_rng(seed)
    n = len(df)
    order = rng.permutation(n)
    rem = df.iloc[order[: int(removed * n)]]
    chg = df.iloc[order[int(removed * n) : int(removed * n) + int(changed * n)]]
    src = df.iloc[rng.choice(n, int(added * n), replace=False)]
    for path in chg["image_path"]:  # a new photo under the same id and path
        with Image.open(data_dir / path) as im:
            ImageOps.mirror(im).rotate(8, fillcolor=0).save(data_dir / path)
    (data_dir / "images" / "new").mkdir(parents=True, exist_ok=True)
    new_rows = []
    stamp = time.strftime("%H%M%S")
    for i, row in enumerate(src.itertuples()):
        pid = f"new-{stamp}-{i:05d}"
        with Image.open(data_dir / row.image_path) as im:
            ImageOps.mirror(im).save(data_dir / "images" / "new" / f"{pid}.png")
        new_rows.append(
            row._asdict() | {"product_id": pid, "image_path": f"images/new/{pid}.png", "title": f"New {row.title}"}
        )
    new = pd.DataFrame(new_rows).drop(columns=["Index"])
    out = pd.concat([df[~df["product_id"].isin(rem["product_id"])], new], ignore_index=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.read_schema(data_dir / "catalog.parquet").metadata or {}
    pq.write_table(
        pa.Table.from_pandas(out, preserve_index=False).replace_schema_metadata(meta), data_dir / "catalog.parquet"
    )
    return {
        "added": new["product_id"].tolist(),
        "changed": chg["product_id"].tolist(),
        "removed": rem["product_id"].tolist(),
        "rows_before": n,
        "rows_after": len(out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--added", type=float, default=0.01)
    ap.add_argument("--changed", type=float, default=0.005)
    ap.add_argument("--removed", type=float, default=0.005)
    args = ap.parse_args()
    s = get_settings()
    offline_env(s.root)
    tune_malloc()
    import lancedb

    from lensflow.core.champion import model_dir, resolve_champion
    from lensflow.core.index import table_metadata, vector_search
    from lensflow.flows.reindex import ReindexParams, reindex
    from lensflow.models.encoder import load_encoder
    from lensflow.serving.served import load_champion
    from lensflow.tasks.embed import embed_catalog
    from lensflow.tasks.evaluate import Gallery, ann_recall
    from lensflow.tasks.index import build_index
    from lensflow.tasks.validate import validate_catalog

    champ = resolve_champion(s)
    ids = mutate(s.data_path, args.added, args.changed, args.removed)
    t0 = time.perf_counter()
    out = reindex(params=ReindexParams(progress=False))
    reindex_s = time.perf_counter() - t0
    took = out["stage_seconds"]  # Prefect task names
    core = sum(took.get(k, 0.0) for k in ("plan-reindex", "embed-catalog", "apply-index-changes", "publish-index"))

    # checks on what is served now
    served = load_champion(s)
    tbl = served.table
    vecs = {
        r["product_id"]: np.asarray(r["vector"])
        for r in tbl.search()
        .where(f"product_id IN ({sql_list(ids['added'][:100])})")
        .select(["product_id", "vector"])
        .limit(100)
        .to_list()
    }
    found = sum(vector_search(tbl, v, 1)[0]["product_id"] == p for p, v in vecs.items())
    removed = set(ids["removed"])
    leaked = sum(bool(removed & {h["product_id"] for h in vector_search(tbl, v, 10)}) for v in vecs.values())

    # baseline, same run: embed the whole new catalog from its images and build a fresh index
    catalog = validate_catalog(s.data_path, Path("/tmp") / "reindex-bench-validation", progress=False).valid
    encoder = load_encoder(model_dir(champ.source), device=resolve_device(s.device))
    t0 = time.perf_counter()
    vectors = embed_catalog(encoder, catalog, s.data_path, loader_workers=s.loader_workers, progress=False)
    embed_s = time.perf_counter() - t0
    uri = str(s.path(s.cache_dir) / "reindex-bench-lancedb")
    shutil.rmtree(uri, ignore_errors=True)
    t0 = time.perf_counter()
    build_index(uri, "fresh", catalog, vectors, table_metadata(tbl))
    build_s = time.perf_counter() - t0
    fresh_tbl = lancedb.connect(uri).open_table("fresh")
    fresh_recall = ann_recall(fresh_tbl, Gallery.from_table(fresh_tbl))
    inc_recall = ann_recall(tbl, Gallery.from_table(tbl))
    shutil.rmtree(uri, ignore_errors=True)

    full = embed_s + build_s
    rows = [
        ("reindex flow, whole run", reindex_s),
        ("reindex core: plan (diff) + embed + apply/index + publish (DVC track)", core),
        ("  of which embed (changed products only)", took.get("embed-catalog", 0.0)),
        ("  of which apply + ANN update", took["apply-index-changes"]),
        (
            "  version data (dvc add) + validate",
            took["version-data"] + took["validate-catalog"],
        ),
        ("full embed of the new catalog (baseline)", embed_s),
        ("full index build (baseline)", build_s),
        ("full embed + index build (baseline)", full),
    ]
    print(
        f"\n{champ.name} v{champ.version}: {ids['rows_before']} -> {ids['rows_after']} products; diff {out['diff']}, "
        f"embedded {out['embedded']}; ANN: {out['reason']}; {describe()['summary']}"
    )
    print("| step | seconds | % of full embed + build |\n|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {100 * sec / full:.1f}% |")
    print(
        f"\nrecall@10 vs exact: incremental {inc_recall:.4f}, fresh build {fresh_recall:.4f} "
        f"(delta {inc_recall - fresh_recall:+.4f})"
    )
    print(
        f"added products found as their own top-1: {found}/{len(vecs)}; queries returning a removed product: {leaked}"
    )
    save_results(
        "reindex",
        {
            "model_version": champ.version,
            "rows_before": ids["rows_before"],
            "rows_after": ids["rows_after"],
            "diff": out["diff"],
            "embedded": out["embedded"],
            "reindex": {k: v for k, v in out.items() if k != "index"},
            "seconds": dict(rows),
            "recall_incremental": inc_recall,
            "recall_fresh": fresh_recall,
            "added_found": found,
            "added_checked": len(vecs),
            "queries_with_removed": leaked,
        },
    )


if __name__ == "__main__":
    main()
