"""Held-out shopper photos, condition by condition, on the champion: with and without the localizer.

    python -m benchmarks.robustness [--per-condition 50] [--combined 300] [--model DIR]
                                    [--localizer '{"deskew": true}' ...]

The photos come from tasks/helpers/heldout_photos.py (no code, parameters or seeds shared with training).
Columns: the champion's encoder as served, the same encoder with the localizer switched off (or on,
for a champion trained before it existed), one column per `--localizer` setting (models.localize.
LocalizeConfig fields: the ablation of side, margin, deskew), and the time per query of each (photo
generation included). Writes benchmarks/results/robustness-*.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.machine import save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-condition", type=int, default=50)
    ap.add_argument("--combined", type=int, default=300)
    ap.add_argument("--model", type=Path, help="an encoder directory to evaluate against the champion's index")
    ap.add_argument(
        "--localizer", action="append", default=[], help="JSON LocalizeConfig overrides: one more column each"
    )
    args = ap.parse_args()

    from lensflow.models.encoder import load_encoder
    from lensflow.models.localize import LocalizeConfig, Localizer
    from lensflow.serving.served import load_champion
    from lensflow.tasks.evaluate import Gallery
    from lensflow.tasks.helpers.catalog import load_catalog
    from lensflow.tasks.robustness import robustness

    s = get_settings()
    offline_env(s.root)
    served = load_champion(s)
    encoder = load_encoder(args.model) if args.model else served.encoder
    gallery = Gallery.from_table(served.table)
    if args.model:  # the gallery in this encoder's space
        import numpy as np

        from lensflow.tasks.embed import embed_catalog

        catalog_rows = load_catalog(s.data_path).set_index("product_id").loc[gallery.ids].reset_index()
        gallery.vectors = np.asarray(embed_catalog(encoder, catalog_rows, s.data_path))
    catalog = load_catalog(s.data_path)
    own = encoder.localizer
    import json

    base = own or Localizer.load({})
    variants = {"served": own, "no localizer" if own else "with localizer": None if own else base}
    for spec in args.localizer:
        variants[spec] = Localizer(base.model, LocalizeConfig(**json.loads(spec)))
    tables, seconds = {}, {}
    for name, localizer in variants.items():
        encoder.localizer = localizer
        t0 = time.perf_counter()
        tables[name] = robustness(encoder, gallery, catalog, s.data_path, args.per_condition, args.combined)
        seconds[name] = (time.perf_counter() - t0) / sum(r["queries"] for r in tables[name].values())
    encoder.localizer = own
    names = list(tables)
    print(f"\nchampion v{served.champion.version}, {len(gallery.ids):,} products; R@1 / R@10 / category P@10")
    for n in names:
        print(f"{n}: R@1 / R@10 / category P@10")
    print(f"{'condition':<16}" + "".join(f"{i:>26}" for i in range(len(names))))
    for cond in tables[names[0]]:
        print(
            f"{cond:<16}"
            + "".join(
                f"{tables[n][cond]['recall_at_1']:>10.3f}{tables[n][cond]['recall_at_10']:>8.3f}"
                f"{tables[n][cond]['category_precision_at_10']:>8.3f}"
                for n in names
            )
        )
    print(f"{'s per query':<16}" + "".join(f"{seconds[n]:>26.4f}" for n in names))
    save_results(
        "robustness",
        {
            "model_version": served.champion.version,
            "model": str(args.model or "champion"),
            "products": len(gallery.ids),
            "tables": tables,
            "seconds_per_query": seconds,
        },
    )


if __name__ == "__main__":
    main()
