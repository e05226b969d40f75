"""Photo decoding, measured on the catalog in data/ with its champion: are perturbed copies of the catalog's
transparent PNGs, and phone photos stored sideways with an EXIF orientation tag, found at rank 1?

Two arms, each decoding the gallery and the queries the same way, searched exactly (numpy) with the
champion's encoder, in the same run:
- baseline: `convert("RGB")` (alpha dropped, hidden colour exposed; EXIF ignored), what lensflow did before;
- lensflow: `models.preprocess.to_rgb` (EXIF applied, alpha composited onto the documented background).
Queries: every product whose file has transparency, re-exported with another colour under its transparent
pixels, at 90% scale and shifted a few pixels (still a transparent PNG); and up to 300 products as a phone
photo (opaque on white, JPEG q90) stored turned 90 degrees with EXIF orientation 6.

    python -m benchmarks.decode          # after a retrain on your catalog (a champion must exist)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks.machine import save_results
from lensflow.core.runtime import offline_env
from lensflow.core.settings import get_settings
from lensflow.models.preprocess import has_alpha, to_rgb


def plain_rgb(image: Image.Image) -> Image.Image:
    """The baseline decoder: mode conversion only, with no EXIF record left for anything downstream to apply."""
    rgb = image.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def transparent_copy(image: Image.Image, rng: np.random.Generator) -> bytes:
    """The same product exported again: other colour under the transparent pixels, 90% scale, shifted."""
    rgba = np.array(image.convert("RGBA"))
    rgba[rgba[..., 3] == 0, :3] = rng.integers(0, 256, 3)
    product = Image.fromarray(rgba, "RGBA")
    w, h = product.size
    small = product.resize((round(w * 0.9), round(h * 0.9)), Image.Resampling.BICUBIC)
    canvas = Image.fromarray(np.zeros((h, w, 4), np.uint8) | np.array([*rng.integers(0, 256, 3), 0], np.uint8), "RGBA")
    dx, dy = (int(v) for v in rng.integers(0, max(1, w - small.width), 2))
    canvas.paste(small, (dx, dy))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


def phone_photo(image: Image.Image) -> bytes:
    """The product as an opaque JPEG, its pixels stored turned 90 degrees with EXIF orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    to_rgb(image).transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def embed(encoder, images: list[Image.Image], decode, batch: int = 128) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            arrays = [encoder.preprocess.to_array(decode(im)) for im in images[i : i + batch]]
            out.append(encoder.encode_images(encoder.preprocess.to_tensor(arrays)).float().numpy())
    return np.concatenate(out)


def ranks(queries: np.ndarray, gallery: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's own product (exact cosine; vectors are L2-normalised)."""
    scores = queries @ gallery.T
    return (scores > scores[np.arange(len(truth)), truth][:, None]).sum(axis=1) + 1


def main() -> None:
    from lensflow.serving.served import load_champion

    s = get_settings()
    offline_env(s.root)
    served = load_champion(s)
    rows = (
        served.table.search()
        .select(["product_id", "image_path"])
        .limit(served.table.count_rows())
        .to_arrow()
        .to_pydict()
    )
    paths = rows["image_path"]
    images = []
    for p in paths:
        with Image.open(s.data_path / p) as im:
            im.load()
            images.append(im)
    rng = np.random.default_rng(0)
    alpha = [i for i, im in enumerate(images) if has_alpha(im)]
    phone = sorted(rng.choice(len(images), size=min(300, len(images)), replace=False).tolist())
    queries = {
        "transparent PNG, re-exported": (alpha, [transparent_copy(images[i], rng) for i in alpha]),
        "phone photo, EXIF orientation 6": (phone, [phone_photo(images[i]) for i in phone]),
    }
    table = {}
    for arm, decode in (("baseline convert('RGB')", plain_rgb), ("lensflow to_rgb", to_rgb)):
        gallery = embed(served.encoder, images, decode)
        for name, (truth, data) in queries.items():
            if not truth:
                continue
            r = ranks(
                embed(served.encoder, [Image.open(io.BytesIO(d)) for d in data], decode), gallery, np.array(truth)
            )
            table.setdefault(name, {"queries": len(truth)})[arm] = {
                "recall_at_1": round(float((r == 1).mean()), 4),
                "recall_at_10": round(float((r <= 10).mean()), 4),
            }
    print(
        f"catalog {s.data_path}: {len(images)} products, {len(alpha)} with transparency; "
        f"champion v{served.champion.version}"
    )
    print(
        f"{'queries':<34} {'n':>5}  {'baseline R@1':>12} {'lensflow R@1':>12}  "
        f"{'baseline R@10':>13} {'lensflow R@10':>13}"
    )
    for name, row in table.items():
        b, ours = row["baseline convert('RGB')"], row["lensflow to_rgb"]
        print(
            f"{name:<34} {row['queries']:>5}  {b['recall_at_1']:>12.3f} {ours['recall_at_1']:>12.3f}  "
            f"{b['recall_at_10']:>13.3f} {ours['recall_at_10']:>13.3f}"
        )
    save_results(
        "decode",
        {
            "catalog_rows": len(images),
            "transparent_rows": len(alpha),
            "model_version": served.champion.version,
            "results": table,
        },
    )


if __name__ == "__main__":
    main()
