"""Catalog embedding throughput: lensflow's end-to-end path vs the hardware limit and a naive loop.

On two image sets made from the Fashion-MNIST sample (the catalog's own small PNGs, and the same
products as 640x640 JPEGs, as real catalogs ship them, so that decode cost shows), in one run:

- model-only: the image tower + heads on pre-decoded, preprocessed tensors (the limit here);
- end-to-end: lensflow's path (read, decode, preprocess in loader workers, batched forward,
  Arrow batches streamed into a LanceDB table), for several worker counts;
- naive: open, preprocess and encode one image at a time.

Also text embedding (batched vs one at a time). Peak RSS of this process per case (loader workers
are separate processes, listed beside it). Prints a table; writes benchmarks/results/embed-<time>.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe, save_results
from lensflow.core.runtime import offline_env, tune_malloc
from lensflow.core.settings import get_settings


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def image_sets(work: Path, n: int, side: int) -> dict:
    """{name: (catalog, data_dir)}: n sample products as their catalog PNGs and as side x side JPEGs."""
    import pandas as pd
    from PIL import Image

    from lensflow.tasks.sample import build_sample_catalog

    png_dir = work / f"fmnist-{n}"
    built = png_dir / "catalog.parquet"
    catalog = pd.read_parquet(built) if built.exists() else build_sample_catalog(png_dir, limit=n)
    catalog = catalog.head(n).reset_index(drop=True)
    jpeg_dir = work / f"jpeg{side}-{n}"
    jpeg = catalog.copy()
    jpeg["image_path"] = [str(Path(p).with_suffix(".jpg")) for p in catalog["image_path"]]
    for src, dst in zip(catalog["image_path"], jpeg["image_path"]):
        out = jpeg_dir / dst
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(png_dir / src) as im:
                im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return {"catalog PNG 28 px": (catalog, png_dir), f"JPEG {side} px": (jpeg, jpeg_dir)}


def timed(fn) -> tuple[float, float | None, object]:
    reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, peak_rss_mb(), out


def model_only(encoder, catalog, data_dir: Path, batch: int) -> tuple[float, float | None]:
    import torch

    from lensflow.tasks.helpers.images import CatalogImages

    images = CatalogImages(data_dir, catalog["image_path"].tolist(), encoder.preprocess)
    arrays = np.stack([images[i] for i in range(len(images))])
    batches = [encoder.preprocess.to_tensor(arrays[i : i + batch]) for i in range(0, len(arrays), batch)]

    def run():
        with torch.inference_mode():
            for x in batches:
                encoder.encode_images(x)

    run_s, rss, _ = timed(run)
    return len(catalog) / run_s, rss


def end_to_end(encoder, catalog, data_dir: Path, batch: int, workers: int, uri: str) -> tuple[float, float | None]:
    from lensflow.core.index import IndexConfig
    from lensflow.tasks.embed import embedding_batches
    from lensflow.tasks.index import build_index

    def run():
        batches = embedding_batches(
            encoder, catalog, data_dir, batch_size=batch, loader_workers=workers, progress=False
        )
        return build_index(
            uri,
            f"bench-w{workers}-{time.monotonic_ns()}",
            catalog,
            batches,
            {},
            IndexConfig.preset(min_rows=10**12),
            dim=encoder.embed_dim,
        )

    run_s, rss, info = timed(run)
    assert info.rows == len(catalog)
    return len(catalog) / run_s, rss


def naive(encoder, catalog, data_dir: Path, n: int) -> tuple[float, float | None]:
    import torch
    from PIL import Image

    paths = catalog["image_path"].tolist()[:n]

    def run():
        with torch.inference_mode():
            for p in paths:
                with Image.open(data_dir / p) as im:
                    encoder.encode_images(encoder.preprocess([im.convert("RGB")]))

    run_s, rss, _ = timed(run)
    return len(paths) / run_s, rss


def text_rates(encoder, texts: list[str], naive_n: int) -> dict:
    import torch

    from lensflow.tasks.embed import embed_texts

    batched_s, batched_rss, _ = timed(lambda: embed_texts(encoder, texts))

    def one_by_one():
        with torch.inference_mode():
            for t in texts[:naive_n]:
                encoder.encode_texts([t])

    naive_s, naive_rss, _ = timed(one_by_one)
    return {
        "batched_per_s": round(len(texts) / batched_s, 1),
        "batched_peak_rss_mb": batched_rss,
        "naive_per_s": round(min(naive_n, len(texts)) / naive_s, 1),
        "naive_peak_rss_mb": naive_rss,
        "texts": len(texts),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4000, help="products per image set")
    ap.add_argument("--jpeg-side", type=int, default=640)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", default="0,1,2", help="loader worker counts to run end to end")
    ap.add_argument("--naive", type=int, default=500, help="images (and texts) for the one-at-a-time baselines")
    ap.add_argument("--preset", default="lit-lite0-minilm")
    args = ap.parse_args()

    s = get_settings()
    offline_env(s.root)
    tune_malloc()
    import torch

    from lensflow.models.encoder import build_encoder

    encoder = build_encoder(args.preset).eval()
    work = s.path(s.cache_dir) / "bench"
    sets = image_sets(work, args.images, args.jpeg_side)
    workers = [int(w) for w in args.workers.split(",")]
    db = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    rows, table = [], []
    warm = sets["catalog PNG 28 px"]
    model_only(encoder, warm[0].head(4 * args.batch), warm[1], args.batch)  # warm-up: allocator, kernels,
    end_to_end(encoder, warm[0].head(args.batch), warm[1], args.batch, 0, str(db))  # and LanceDB's runtime (~2 s, once)
    try:
        for name, (catalog, data_dir) in sets.items():
            limit, limit_rss = model_only(encoder, catalog, data_dir, args.batch)
            base, base_rss = naive(encoder, catalog, data_dir, args.naive)
            cases = [
                ("model-only (pre-decoded tensors): the limit", limit, limit_rss, None),
                ("naive loop (one image at a time)", base, base_rss, None),
            ]
            for w in workers:
                rate, rss = end_to_end(encoder, catalog, data_dir, args.batch, w, str(db))
                cases.append((f"end-to-end, {w} loader worker{'s' if w != 1 else ''} (into LanceDB)", rate, rss, w))
            for case, rate, rss, w in cases:
                rows.append(
                    {
                        "set": name,
                        "case": case,
                        "workers": w,
                        "img_per_s": round(rate, 1),
                        "peak_rss_mb": rss,
                        "of_limit": round(rate / limit, 3),
                        "x_naive": round(rate / base, 2),
                    }
                )
                table.append(f"| {name} | {case} | {rate:,.0f} | {rate / limit:.0%} | {rate / base:.1f}x | {rss} |")
        titles = sets["catalog PNG 28 px"][0]["title"].tolist()
        text = text_rates(encoder, titles, args.naive)
    finally:
        shutil.rmtree(db, ignore_errors=True)

    print(
        f"\n{describe()['summary']}; preset {args.preset} (image side {encoder.preprocess.size} px), "
        f"batch {args.batch}, torch threads {torch.get_num_threads()}, {args.images} images per set\n"
    )
    print("| image set | case | img/s | of model-only | vs naive | peak RSS MB (this process) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))
    print(f"\ntext: {text['batched_per_s']:,.0f} texts/s batched (256) vs {text['naive_per_s']:,.0f} one at a time")
    save_results(
        "embed",
        {
            "preset": args.preset,
            "image_side": encoder.preprocess.size,
            "batch": args.batch,
            "images_per_set": args.images,
            "jpeg_side": args.jpeg_side,
            "rows": rows,
            "text": text,
        },
    )


if __name__ == "__main__":
    main()
