"""Build the bundled sample catalog from Fashion-MNIST (Debian package `dataset-fashion-mnist`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lensflow.core.complements import COMPLEMENTS_FILE
from lensflow.tasks.helpers.progress import progress_bar

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# "complete the look" for the sample (data/complements.json, lensflow.core.complements): tops <-> trousers <->
# shoes <-> bags; a dress goes with shoes and bags
_SLOTS = {
    "tops": ["T-shirt/top", "Pullover", "Shirt", "Coat"],
    "trousers": ["Trouser"],
    "shoes": ["Sneaker", "Sandal", "Ankle boot"],
    "bags": ["Bag"],
}
SAMPLE_COMPLEMENTS = {
    c: [o for other, cats in _SLOTS.items() if other != slot for o in cats] for slot, cs in _SLOTS.items() for c in cs
} | {"Dress": [*_SLOTS["shoes"], *_SLOTS["bags"]]}
_NOUNS = [  # a few ways shops name each category
    ["t-shirt", "tee", "top"],
    ["trousers", "pants", "trouser"],
    ["pullover", "sweater", "jumper"],
    ["dress", "summer dress", "midi dress"],
    ["coat", "jacket", "overcoat"],
    ["sandals", "sandal", "flip-flops"],
    ["shirt", "button-down shirt", "blouse"],
    ["sneakers", "trainers", "sneaker"],
    ["bag", "handbag", "tote bag"],
    ["ankle boots", "boots", "ankle boot"],
]
_STYLES = ["Classic", "Everyday", "Essential", "Casual", "Modern", "Relaxed", "Urban", "Timeless"]
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
VAL_FROM_TRAIN = 5_000  # the last 5,000 Fashion-MNIST training images form the val split
SAMPLE_MARK = "lensflow.sample"
SAMPLE_IMAGE = re.compile(r"images/(train|val|test)/fm-(tr|te)-\d{5}\.png")  # the names build_sample_catalog writes


class NotASample(FileExistsError):
    """The data directory holds files lensflow did not create; a sample build would replace or mix with them."""


def sample_meta(data_dir: Path) -> dict | None:
    """The sample mark of data/catalog.parquet ({"source", "limit"}), or None when it is not a lensflow sample."""
    import pyarrow.parquet as pq

    path = data_dir / "catalog.parquet"
    try:
        raw = (pq.read_schema(path).metadata or {}).get(SAMPLE_MARK.encode()) if path.exists() else None
    except Exception:  # noqa: BLE001 - an unreadable parquet is not one we wrote
        return None
    return json.loads(raw) if raw else None


def sample_files(data_dir: Path) -> set[str]:
    """Files under data_dir (relative paths) that a sample build wrote: the marked catalog, its
    categories.json and the images named the way the builder names them (not whatever a possibly edited
    catalog lists: a user's photo never counts as the sample's)."""
    owned = (
        {f for f in ("catalog.parquet", "categories.json", COMPLEMENTS_FILE) if (data_dir / f).is_file()}
        if sample_meta(data_dir) is not None
        else set()
    )
    images = data_dir / "images"
    if images.is_dir():
        owned |= {
            rel for f in images.rglob("*.png") if SAMPLE_IMAGE.fullmatch(rel := f.relative_to(data_dir).as_posix())
        }
    return owned


def foreign_files(data_dir: Path) -> list[str]:
    """Files under data_dir that lensflow's sample did not create (a user's catalog and photos), relative paths."""
    if not data_dir.is_dir():
        return []
    owned = sample_files(data_dir)
    return sorted(
        rel
        for f in data_dir.rglob("*")
        if (f.is_file() or f.is_symlink()) and (rel := f.relative_to(data_dir).as_posix()) not in owned
    )


def describe_files(data_dir: Path, rels: list[str], shown: int = 5) -> str:
    """`data/catalog.csv, data/images/ (192 files)`: top-level entries with file counts."""
    groups = Counter(rel.split("/", 1)[0] + ("/" if "/" in rel else "") for rel in rels)
    parts = [
        f"{data_dir / name}/ ({n} file{'s' * (n > 1)})" if name.endswith("/") else f"{data_dir / name}"
        for name, n in groups.items()
    ]
    return ", ".join(parts[:shown]) + (f" and {len(parts) - shown} more" if len(parts) > shown else "")


def remove_files(data_dir: Path, rels: list[str]) -> None:
    """Delete exactly these files under data_dir, then the folders that left empty (never data_dir itself)."""
    for rel in rels:
        (data_dir / rel).unlink(missing_ok=True)
    for folder in sorted(
        {p for rel in rels for p in (data_dir / rel).parents if p.is_relative_to(data_dir) and p != data_dir},
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def check_sample_may_write(data_dir: Path, force: bool = False) -> list[str]:
    """The files a sample build must delete because lensflow did not create them: none (or NotASample)
    without `force`; with it, the list (deleted by the build)."""
    foreign = foreign_files(data_dir)
    if foreign and not force:
        raise NotASample(
            f"{data_dir} holds files lensflow did not create: {describe_files(data_dir, foreign)}. The sample catalog "
            "would replace them, so nothing was changed. To train on your own catalog run `lensflow retrain` without "
            "--limit; to try the sample, point LENSFLOW_DATA_DIR at another folder; or pass --force to DELETE those "
            f"{len(foreign)} file(s) and write the sample in their place."
        )
    return foreign


def read_idx(images_gz: Path, labels_gz: Path) -> tuple[np.ndarray, np.ndarray]:
    """IDX files -> uint8 images [N, 28, 28] and labels [N]."""
    with gzip.open(images_gz) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_gz) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    if len(images) != len(labels):
        raise ValueError(f"{images_gz}: {len(images)} images but {len(labels_gz)} has {len(labels)} labels")
    return images, labels


def split_counts(limit: int | None, n_train: int = 60_000, n_test: int = 10_000) -> tuple[int, int, int]:
    """(train, val, test) row counts, keeping Fashion-MNIST's 55:5:10 proportions under `limit`."""
    total = n_train + n_test
    if limit is None or limit >= total:
        return n_train - VAL_FROM_TRAIN, VAL_FROM_TRAIN, n_test
    if limit < 10:
        raise ValueError(f"--limit must be at least 10, got {limit}")
    test = max(1, round(limit * n_test / total))
    val = max(1, round(limit * VAL_FROM_TRAIN / total))
    return limit - test - val, val, test


def title_for(product_id: str, label: int) -> str:
    h = int(hashlib.sha256(product_id.encode()).hexdigest(), 16)
    nouns = _NOUNS[label]
    return f"{_STYLES[h % len(_STYLES)]} {nouns[(h // len(_STYLES)) % len(nouns)]}"


def build_sample_catalog(
    data_dir: Path, limit: int | None = None, source: Path = FASHION_MNIST_DIR, force: bool = False
) -> pd.DataFrame:
    """Write data/images/<split>/<id>.png, data/catalog.parquet, data/categories.json and data/complements.json.

    Deterministic: the same source and limit give byte-identical files (and so the same DVC md5).
    Only files an earlier sample build wrote are replaced; anything else in data_dir (a user's catalog
    or photos) stops the build with NotASample, unless `force`, which deletes exactly those files.
    """
    files = [source / f for f in (*TRAIN_FILES, *TEST_FILES)]
    absent = [str(f) for f in files if not f.exists()]
    if absent:
        raise FileNotFoundError(
            f"Fashion-MNIST not found ({', '.join(absent)}). Install it with: apt-get install -y dataset-fashion-mnist"
        )
    catalog_path = data_dir / "catalog.parquet"
    doomed = check_sample_may_write(data_dir, force) + sorted(sample_files(data_dir))
    n_train, n_val, n_test = split_counts(limit)
    train_x, train_y = read_idx(*files[:2])
    test_x, test_y = read_idx(*files[2:])
    parts = [
        ("train", "tr", train_x[:n_train], train_y[:n_train], 0),
        (
            "val",
            "tr",
            train_x[-VAL_FROM_TRAIN:][:n_val],
            train_y[-VAL_FROM_TRAIN:][:n_val],
            len(train_x) - VAL_FROM_TRAIN,
        ),
        ("test", "te", test_x[:n_test], test_y[:n_test], 0),
    ]
    remove_files(
        data_dir, doomed
    )  # the earlier sample's files (and, with force, the listed foreign ones): nothing else
    images_dir = data_dir / "images"
    rows = []
    total = n_train + n_val + n_test
    with progress_bar(total=total, desc="sample catalog", unit="img") as bar:
        for split, tag, xs, ys, offset in parts:
            (images_dir / split).mkdir(parents=True, exist_ok=True)
            for i, (pixels, label) in enumerate(zip(xs, ys)):
                pid = f"fm-{tag}-{offset + i:05d}"
                rel = f"images/{split}/{pid}.png"
                Image.fromarray(pixels, mode="L").save(data_dir / rel, format="PNG", optimize=False, compress_level=6)
                rows.append(
                    {
                        "product_id": pid,
                        "title": title_for(pid, int(label)),
                        "category": CATEGORIES[int(label)],
                        "image_path": rel,
                        "split": split,
                    }
                )
                bar.update()
    df = pd.DataFrame(rows)
    table = __import__("pyarrow").Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({SAMPLE_MARK: json.dumps({"source": "fashion-mnist", "limit": limit})})
    __import__("pyarrow.parquet").parquet.write_table(table, catalog_path)
    (data_dir / "categories.json").write_text(json.dumps(CATEGORIES, indent=1) + "\n")
    (data_dir / COMPLEMENTS_FILE).write_text(json.dumps(SAMPLE_COMPLEMENTS, indent=1) + "\n")
    return df
