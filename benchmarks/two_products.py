"""Two products in one photo: does each region the page offers find its own product?

    python -m benchmarks.two_products [--photos 100]

Each photo holds two test products side by side on a background from the held-out generator
(tasks/helpers/heldout_photos.py). The champion's localizer offers regions (`/detect`: one saliency pass per
product); each region is searched alone (`box=`), as the page does when a shopper picks it. Counted per
product: offered (a region's centre lies in its box), found at rank 1 and in the top 10 by its region's
search. Baseline in the same run: searching the whole photo once (at most one of the two can be first).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from benchmarks.machine import save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings


def composite(left: Image.Image, right: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, list[tuple]]:
    from lensflow.tasks.helpers.heldout_photos import BACKGROUND_MAKERS, cutout

    w, h = 480, 320
    bg = BACKGROUND_MAKERS[str(rng.choice(["dark", "bright", "textured", "photographic"]))](w, h, rng)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).convert("RGBA")
    boxes = []
    for im, x0 in ((left, 10), (right, 250)):
        cut = cutout(im)
        cut = cut.crop(cut.getchannel("A").getbbox() or (0, 0, cut.width, cut.height))
        side = rng.uniform(180, 220)
        k = side / max(cut.size)
        cut = cut.resize((max(1, int(cut.width * k)), max(1, int(cut.height * k))), Image.Resampling.LANCZOS)
        x, y = x0 + int(rng.uniform(0, 220 - cut.width + 1)) if cut.width < 220 else x0, int((h - cut.height) / 2)
        canvas.alpha_composite(cut, (x, max(0, y)))
        boxes.append((x, max(0, y), x + cut.width, max(0, y) + cut.height))
    buf = io.BytesIO()
    canvas.convert("RGB").save(buf, "JPEG", quality=88)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100)
    args = ap.parse_args()

    from lensflow.core.index import best_of
    from lensflow.models.preprocess import to_rgb
    from lensflow.serving.search import image_vector
    from lensflow.serving.served import load_champion
    from lensflow.tasks.helpers.catalog import load_catalog
    from lensflow.tasks.robustness import heldout_rows

    s = get_settings()
    offline_env(s.root)
    served = load_champion(s)
    if served.encoder.localizer is None:
        raise SystemExit("the champion has no localizer: nothing to offer per product")
    catalog = load_catalog(s.data_path)
    rows = heldout_rows(catalog, 2 * args.photos)
    rng = np.random.default_rng(2026)
    offered = found1 = found10 = whole1 = 0
    n = 0
    for i in range(0, len(rows) - 1, 2):
        pair = rows.iloc[i : i + 2]
        images = []
        for path in pair["image_path"]:
            with Image.open(s.data_path / path) as im:
                images.append(to_rgb(im))
        photo, boxes = composite(images[0], images[1], rng)
        regions = served.encoder.localizer.regions(photo)
        whole = [r["product_id"] for r in best_of(served.table, image_vector(served, photo), 10)]
        for pid, (x0, y0, x1, y1) in zip(pair["product_id"], boxes):
            n += 1
            whole1 += whole[0] == pid
            mine = [
                r for r in regions if x0 <= (r.box[0] + r.box[2]) / 2 <= x1 and y0 <= (r.box[1] + r.box[3]) / 2 <= y1
            ]
            if not mine:
                continue
            offered += 1
            hits = [r["product_id"] for r in best_of(served.table, image_vector(served, photo, mine[0].box), 10)]
            found1 += hits[0] == pid
            found10 += pid in hits
    table = {
        "products": n,
        "offered": offered / n,
        "region_recall_at_1": found1 / n,
        "region_recall_at_10": found10 / n,
        "whole_photo_recall_at_1": whole1 / n,
    }
    print(f"\n{n // 2} two-product photos, champion v{served.champion.version}, {served.table.count_rows():,} products")
    for k, v in table.items():
        print(f"{k:<26} {v:>8.3f}" if isinstance(v, float) else f"{k:<26} {v:>8}")
    save_results("two-products", {"model_version": served.champion.version} | table)


if __name__ == "__main__":
    main()
