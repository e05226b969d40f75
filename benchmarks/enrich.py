"""Catalog enrichment (tasks/enrich.py) at catalog scale, on the champion of the project in LENSFLOW_ROOT (after
`make demo`): what the retrain's enrich-catalog step costs and how good its columns are.

- Cost: the category vote over every product (exact 20-NN of each against all) and the colour tags of every
  photo, beside the floor of the colour pass measured in the same run (decoding the same photos, nothing else).
- Quality: predicted_category accuracy against the catalog's categories (test split); colour tags of test
  photos recoloured with known colours (benchmarks/recommend.recolour); the likely-mislabelled detector's
  precision and recall with 1% of the categories flipped on purpose.

Prints a table; writes benchmarks/results/enrich-<time>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from benchmarks.machine import describe as machine
from benchmarks.machine import save_results
from benchmarks.recommend import recolour
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=500, help="test photos recoloured per colour")
    args = ap.parse_args()
    from lensflow.models.colours import colour_tags
    from lensflow.models.preprocess import to_rgb
    from lensflow.serving.served import load_champion
    from lensflow.tasks.enrich import catalog_colours, vote_categories
    from lensflow.tasks.evaluate import Gallery
    from lensflow.tasks.mislabel import mislabelled

    s = get_settings()
    offline_env(s.root)
    served = load_champion(s)
    gallery = Gallery.from_table(served.table)
    paths = served.table.to_arrow().select(["image_path"])["image_path"].to_pylist()
    n = len(gallery.ids)

    t0 = time.perf_counter()
    predicted, confidence = vote_categories(gallery.vectors, gallery.categories)
    vote_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in paths:
        with Image.open(s.data_path / p) as im:
            to_rgb(im)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tags = catalog_colours(s.data_path, paths, progress=False)
    colour_s = time.perf_counter() - t0

    test = gallery.split == "test"
    accuracy = float((np.asarray(predicted) == gallery.categories)[test].mean())
    palette = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 210), "yellow": (230, 210, 40)}
    palette |= {"navy": (25, 35, 100), "pink": (240, 120, 170), "purple": (140, 50, 170), "orange": (240, 140, 30)}
    picks = np.flatnonzero(test)[: args.photos]
    named = {}
    for name, rgb in palette.items():
        with_colour = colour_tags([recolour(Image.open(s.data_path / paths[i]), rgb) for i in picks])
        named[name] = round(float(np.mean([t.split()[:1] == [name] for t in with_colour])), 4)

    rng = np.random.default_rng(0)
    noisy = gallery.categories.copy()
    flip = rng.choice(n, size=n // 100, replace=False)
    cats = np.unique(noisy)
    for i in flip:
        noisy[i] = rng.choice(cats[cats != noisy[i]])
    flagged = set(mislabelled(gallery.ids, noisy, *vote_categories(gallery.vectors, noisy)).product_id)
    flipped = set(gallery.ids[flip])
    clean = mislabelled(gallery.ids, gallery.categories, predicted, confidence)

    table = {
        "rows": n,
        "vote_s": round(vote_s, 1),
        "colour_tags_s": round(colour_s, 1),
        "decode_only_s (floor of the colour pass)": round(decode_s, 1),
        "predicted_category_accuracy_test": round(accuracy, 4),
        "colour_tag_first_name_correct": named,
        "mislabel_precision_1pct": round(len(flagged & flipped) / max(1, len(flagged)), 4),
        "mislabel_recall_1pct": round(len(flagged & flipped) / len(flipped), 4),
        "flagged_without_noise": len(clean),
    }
    top = dict(sorted(zip(*np.unique(tags, return_counts=True)), key=lambda kv: -kv[1])[:6])
    table["catalog_tags_top"] = {str(k): int(v) for k, v in top.items()}
    print("| enrichment (70k demo champion) | value |\n|---|---|")
    for k, v in table.items():
        print(f"| {k} | {v} |")
    save_results("enrich", {"machine": machine(), "model_version": served.champion.version, "enrich": table})


if __name__ == "__main__":
    main()
