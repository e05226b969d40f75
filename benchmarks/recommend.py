"""Shopper features on the champion of the project in LENSFLOW_ROOT (after `make demo`): recommendations,
describe and complete-the-look, each beside a baseline measured in the same run.

- Recommendations, on simulated sessions from the test split: five viewed products of one category with one
  product of another category slipped in (noise), the next product of the same category held out. Hit rate@10
  (the held-out product recommended) and category precision@10 (recommendations in the session's category),
  against popularity (the products most viewed across other simulated sessions) and more-like-this of the last
  viewed product; diversity as the mean pairwise cosine of the ten, with and without MMR.
- Describe: category accuracy and suggested-title agreement on held-out shopper photos of test products
  (tasks/helpers/heldout_photos.py, not the catalog photos, which would find themselves); colour naming on test
  photos recoloured with known colours.
- Latency p50/p99 of POST /recommend, POST /describe and GET complete-the-look through the app (in-process
  ASGI client: routing, validation and JSON included, no sockets), with the sample's complements.

Prints tables; writes benchmarks/results/recommend-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import time
from collections import Counter
from dataclasses import replace

import numpy as np
from PIL import Image

from benchmarks.machine import describe as machine
from benchmarks.machine import save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings


def sessions(catalog, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    test = catalog[catalog["split"] == "test"]
    by_cat = {c: g["product_id"].tolist() for c, g in test.groupby("category")}
    cats = sorted(by_cat)
    out = []
    for _ in range(n):
        c = cats[rng.integers(len(cats))]
        picks = rng.choice(by_cat[c], size=6, replace=False).tolist()
        noise_cat = cats[(cats.index(c) + 1 + rng.integers(len(cats) - 1)) % len(cats)]
        viewed = picks[:5]
        viewed.insert(int(rng.integers(1, 5)), by_cat[noise_cat][rng.integers(len(by_cat[noise_cat]))])
        out.append({"category": c, "viewed": viewed, "next": picks[5]})
    return out


def diversity(vectors: dict, ids: list[str]) -> float:
    v = np.stack([vectors[i] for i in ids])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    return float(sim[np.triu_indices(len(ids), 1)].mean())


def recolour(image: Image.Image, rgb: tuple[int, int, int]) -> Image.Image:
    """A grey product photo (bright product on black) turned into an `rgb` product on a white backdrop."""
    g = np.asarray(image.convert("L"), np.float32) / 255
    shade = (0.55 + 0.45 * g)[..., None] * np.asarray(rgb, np.float32)
    out = np.where((g > 0.08)[..., None], shade, 255.0)
    return Image.fromarray(out.clip(0, 255).astype(np.uint8)).resize((160, 160), Image.Resampling.BICUBIC)


def pct(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--photos", type=int, default=200, help="held-out photos per condition for describe")
    ap.add_argument("--requests", type=int, default=60, help="timed requests per endpoint")
    args = ap.parse_args()
    s = get_settings()
    offline_env(s.root)

    import pandas as pd

    from lensflow.core.complements import complements_of
    from lensflow.models.colours import dominant_colours
    from lensflow.serving import describe as D
    from lensflow.serving import recommend as R
    from lensflow.serving import search as S
    from lensflow.serving.served import load_champion
    from lensflow.tasks.robustness import heldout_photos
    from lensflow.tasks.sample import SAMPLE_COMPLEMENTS

    served = load_champion(s)
    catalog = S.Catalog.of(served.table)
    frame = pd.read_parquet(s.data_path / "catalog.parquet")
    cols = catalog.result_columns
    vec_of = lambda ids: R.product_vectors(served, ids)  # noqa: E731

    # --- recommendations -------------------------------------------------------------------------------------
    sess = sessions(frame, args.sessions)
    train = sessions(frame, args.sessions, seed=1)
    popular = [p for p, _ in Counter(p for x in train for p in x["viewed"]).most_common(50)]
    cat_of = catalog.category_of
    rows = {"recommend (MMR)": [], "recommend (no MMR)": [], "more-like-this, last viewed": [], "popularity": []}
    for x in sess:
        seen = set(x["viewed"])
        lists = {
            "recommend (MMR)": [
                h["product_id"] for h in R.recommend(served, catalog, x["viewed"], [], [], 10, 0, S.Filters())[0]
            ],
            "recommend (no MMR)": [
                h["product_id"]
                for h in R.recommend(served, catalog, x["viewed"], [], [], 10, 0, S.Filters(), diversify=False)[0]
            ],
            "more-like-this, last viewed": [
                h["product_id"]
                for h in S.by_vector(
                    served,
                    catalog,
                    vec_of([x["viewed"][-1]])[x["viewed"][-1]],
                    10,
                    0,
                    S.Filters(),
                    exclude_id=x["viewed"][-1],
                )[0]
                if h["product_id"] not in seen
            ][:10],
            "popularity": [p for p in popular if p not in seen][:10],
        }
        vectors = vec_of(sorted({p for ids in lists.values() for p in ids}))
        for name, ids in lists.items():
            rows[name].append(
                (x["next"] in ids, np.mean([cat_of[p] == x["category"] for p in ids]), diversity(vectors, ids))
            )
    rec_table = {
        name: {
            "hit_rate_at_10": round(float(np.mean([r[0] for r in rs])), 4),
            "category_precision_at_10": round(float(np.mean([r[1] for r in rs])), 4),
            "mean_pairwise_cosine": round(float(np.mean([r[2] for r in rs])), 4),
        }
        for name, rs in rows.items()
    }

    # --- describe -------------------------------------------------------------------------------------------
    desc_table = {}
    for condition in ("framing", "combined"):
        ids, photos = heldout_photos(frame, s.data_path, condition, args.photos)
        truth = dict(zip(frame["product_id"], frame["category"]))
        right = agree = 0
        for pid, photo in zip(ids, photos):
            out = D.describe(served, photo, cols)
            right += out["category"] == truth[pid]
            agree += truth[pid].replace("/", " or ").lower() in out["title"].lower()
        desc_table[condition] = {
            "n": len(ids),
            "category_accuracy": round(right / len(ids), 4),
            "title_names_true_category": round(agree / len(ids), 4),
        }
    palette = {
        "red": (200, 30, 30),
        "green": (30, 160, 60),
        "blue": (40, 60, 210),
        "yellow": (230, 220, 40),
        "orange": (240, 140, 30),
        "purple": (150, 60, 180),
        "pink": (240, 120, 170),
        "navy": (20, 30, 90),
        "brown": (120, 70, 30),
        "grey": (128, 128, 128),
        "black": (20, 20, 20),
    }
    test = frame[frame["split"] == "test"].sample(n=min(args.photos, len(frame)), random_state=0)
    named = total = 0
    confusions: Counter = Counter()
    for i, path in enumerate(test["image_path"]):
        name = list(palette)[i % len(palette)]
        with Image.open(s.data_path / path) as im:
            got = dominant_colours(recolour(im, palette[name]))
        ok = bool(got) and got[0]["name"] == name
        named += ok
        total += 1
        if not ok:
            confusions[(name, got[0]["name"] if got else "-")] += 1
    colour_table = {
        "n": total,
        "first_colour_correct": round(named / total, 4),
        "confusions": {f"{a}->{b}": n for (a, b), n in confusions.most_common(5)},
    }

    # --- likely mislabelled rows: 1% of the catalog's categories flipped on purpose --------------------------------
    from lensflow.tasks.evaluate import Gallery
    from lensflow.tasks.mislabel import likely_mislabelled

    gallery = Gallery.from_table(served.table)
    rng = np.random.default_rng(0)
    noisy = gallery.categories.copy()
    flip = rng.choice(len(noisy), size=len(noisy) // 100, replace=False)
    cats = np.unique(noisy)
    for i in flip:
        noisy[i] = rng.choice(cats[cats != noisy[i]])
    t0 = time.perf_counter()
    flagged = set(likely_mislabelled(gallery.ids, noisy, gallery.vectors).product_id)
    detect_s = time.perf_counter() - t0
    flipped = set(gallery.ids[flip])
    clean = set(likely_mislabelled(gallery.ids, gallery.categories, gallery.vectors).product_id)
    mislabel_table = {
        "rows": len(noisy),
        "flipped": len(flipped),
        "flagged": len(flagged),
        "precision": round(len(flagged & flipped) / max(1, len(flagged)), 4),
        "recall": round(len(flagged & flipped) / len(flipped), 4),
        "flagged_without_noise": len(clean),
        "seconds": round(detect_s, 1),
    }

    # --- latency through the app ------------------------------------------------------------------------------
    from fastapi.testclient import TestClient

    from lensflow.serving.app import create_app
    from lensflow.serving.watcher import ChampionWatcher, load_live

    looks = complements_of(SAMPLE_COMPLEMENTS, catalog.categories)
    watcher = ChampionWatcher(s, 3600, loader=lambda st: replace(load_live(st), complements=looks))
    jpeg = io.BytesIO()
    photos[0].save(jpeg, "JPEG", quality=90)
    lat = {"POST /recommend": [], "POST /describe": [], "GET complete-the-look": []}
    with TestClient(create_app(s, watcher)) as client:
        for i in range(args.requests):
            x = sess[i % len(sess)]
            calls = {
                "POST /recommend": ("POST", "/recommend", {"json": {"viewed": x["viewed"], "limit": 10}}),
                "POST /describe": (
                    "POST",
                    "/describe",
                    {"content": jpeg.getvalue(), "headers": {"content-type": "image/jpeg"}},
                ),
                "GET complete-the-look": ("GET", f"/products/{x['next']}/complete-the-look?limit=3", {}),
            }
            for name, (method, url, kw) in calls.items():
                t0 = time.perf_counter()
                r = client.request(method, url, **kw)
                lat[name].append(time.perf_counter() - t0)
                assert r.status_code == 200, (name, r.status_code, r.text[:200])
    lat_table = {k: pct(v[3:]) for k, v in lat.items()}  # the first requests warm caches

    print(f"champion v{served.champion.version}, {len(catalog.image_paths)} products\n")
    print("| recommendations | hit rate@10 | category P@10 | mean pairwise cosine (lower: more diverse) |")
    print("|---|---|---|---|")
    for name, r in rec_table.items():
        print(f"| {name} | {r['hit_rate_at_10']} | {r['category_precision_at_10']} | {r['mean_pairwise_cosine']} |")
    print("\n| describe, held-out photos | n | category accuracy | title names the true category |\n|---|---|---|---|")
    for cond, r in desc_table.items():
        print(f"| {cond} | {r['n']} | {r['category_accuracy']} | {r['title_names_true_category']} |")
    print(f"\ncolour naming on recoloured test photos: {colour_table}")
    print(f"likely-mislabelled detector, 1% of categories flipped: {mislabel_table}")
    print("\n| endpoint (70k) | p50 ms | p99 ms |\n|---|---|---|")
    for name, r in lat_table.items():
        print(f"| {name} | {r['p50_ms']} | {r['p99_ms']} |")
    save_results(
        "recommend",
        {
            "machine": machine(),
            "model_version": served.champion.version,
            "sessions": len(sess),
            "recommend": rec_table,
            "describe": desc_table,
            "colours": colour_table,
            "mislabel": mislabel_table,
            "latency": lat_table,
        },
    )


if __name__ == "__main__":
    main()
