"""Faulty catalogs for tests: each fault breaks one row (or the whole file) of a good catalog.

`ROW_FAULTS[name](data_dir, df, i)` breaks row i in place (files under data_dir, values in df) and
returns the text the quarantine reason must contain, or None when lensflow must accept the row
(unusual but valid images are converted, not rejected). `FILE_FAULTS[name](data_dir, df)` writes a
catalog file that cannot be used at all and returns the text the error must contain.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def _image(df: pd.DataFrame, i: int, data_dir: Path, name: str) -> Path:
    df.loc[i, "image_path"] = f"images/{name}"
    return data_dir / "images" / name


def truncated(data_dir, df, i):
    path = _image(df, i, data_dir, "truncated.jpg")
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")
    path.write_bytes(path.read_bytes()[:600])
    return "does not decode"


def zero_bytes(data_dir, df, i):
    _image(df, i, data_dir, "empty.png").write_bytes(b"")
    return "does not decode"


def not_an_image(data_dir, df, i):
    _image(df, i, data_dir, "notes.png").write_text("these are not pixels\n")
    return "does not decode"


def _mode_image(mode: str, name: str):
    def fault(data_dir, df, i):
        rgb = np.random.default_rng(i).integers(0, 255, (40, 30, 3), dtype=np.uint8)
        im = Image.fromarray(rgb)
        if mode == "CMYK":
            im.convert("CMYK").save(_image(df, i, data_dir, name), "JPEG")
        elif mode == "I;16":
            Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(_image(df, i, data_dir, name))
        elif mode == "P":
            im.convert("P", palette=Image.Palette.ADAPTIVE).save(_image(df, i, data_dir, name))
        else:  # RGBA with a transparent half
            a = np.dstack([rgb, np.where(np.arange(30) < 15, 0, 255).astype(np.uint8)[None, :].repeat(40, 0)])
            Image.fromarray(a, "RGBA").save(_image(df, i, data_dir, name))
        return None

    return fault


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def bomb(data_dir, df, i):
    _image(df, i, data_dir, "bomb.png").write_bytes(_png_claiming(10_000, 10_000))
    return "more than 50,000,000 pixels"


def absurd_dimensions(data_dir, df, i):
    _image(df, i, data_dir, "wide.png").write_bytes(_png_claiming(2_000_000_000, 1))
    return "pixels"


def missing_file(data_dir, df, i):
    df.loc[i, "image_path"] = "images/nowhere.png"
    return "does not exist"


def absolute_path(data_dir, df, i):
    df.loc[i, "image_path"] = str((data_dir / df.loc[i, "image_path"]).resolve())
    return "is absolute"


def dotdot_path(data_dir, df, i):
    df.loc[i, "image_path"] = "images/../../outside.png"
    return "escapes the data directory"


def symlink_out(data_dir, df, i):
    outside = data_dir.parent / "outside-secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    _image(df, i, data_dir, "link.png").symlink_to(outside)
    return "escapes the data directory"


def duplicate_id(data_dir, df, i):
    df.loc[i, "product_id"] = df.loc[i - 1, "product_id"]
    return "duplicate product_id"


def blank_title(data_dir, df, i):
    df.loc[i, "title"] = " \t "
    return "title is empty"


def missing_title(data_dir, df, i):
    df.loc[i, "title"] = None
    return "title is missing"


def unknown_category(data_dir, df, i):
    df.loc[i, "category"] = "Spaceship"
    return "unknown category"


def bad_split(data_dir, df, i):
    df.loc[i, "split"] = "holdout"
    return "split is not one of"


ROW_FAULTS: dict[str, Callable] = {
    "truncated image": truncated,
    "zero-byte file": zero_bytes,
    "not an image": not_an_image,
    "CMYK JPEG": _mode_image("CMYK", "cmyk.jpg"),
    "16-bit grayscale PNG": _mode_image("I;16", "gray16.png"),
    "palette PNG": _mode_image("P", "palette.png"),
    "RGBA with transparency": _mode_image("RGBA", "alpha.png"),
    "decompression bomb (10000x10000 header)": bomb,
    "absurd dimensions (2e9 x 1)": absurd_dimensions,
    "missing file": missing_file,
    "absolute image_path": absolute_path,
    "image_path with ..": dotdot_path,
    "symlink out of data/": symlink_out,
    "duplicate product_id": duplicate_id,
    "whitespace title": blank_title,
    "missing title": missing_title,
    "unknown category": unknown_category,
    "unknown split": bad_split,
}


def non_utf8_csv(data_dir, df):
    (data_dir / "catalog.parquet").unlink(missing_ok=True)
    text = df.drop(columns=["row"], errors="ignore").to_csv(index=False).replace("number 1", "num\u00e9ro 1")
    (data_dir / "catalog.csv").write_bytes(text.encode("latin-1"))
    return "not UTF-8"


def no_rows(data_dir, df):
    df.head(0).to_parquet(data_dir / "catalog.parquet", index=False)
    return "has no rows"


def missing_column(data_dir, df):
    df.drop(columns=["image_path"]).to_parquet(data_dir / "catalog.parquet", index=False)
    return "missing required column(s) ['image_path']"


def not_a_table(data_dir, df):
    (data_dir / "catalog.parquet").write_bytes(b"PAR1 but not really")
    return "cannot be read"


FILE_FAULTS: dict[str, Callable] = {
    "non-UTF-8 CSV": non_utf8_csv,
    "catalog with no rows": no_rows,
    "required column missing": missing_column,
    "corrupt parquet file": not_a_table,
}
