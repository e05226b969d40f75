"""The catalog contract: loading, column checks and deterministic split assignment."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

REQUIRED = ("product_id", "title", "category", "image_path")
OPTIONAL = ("description", "color", "price", "brand", "split")
SPLITS = ("train", "val", "test")
CATALOG_FILES = ("catalog.parquet", "catalog.csv")


class CatalogError(ValueError):
    """The catalog cannot be read at all (as opposed to bad rows, which are quarantined)."""


def catalog_file(data_dir: Path) -> Path:
    """The project's one catalog file; two of them is an error (which one was meant is not ours to guess)."""
    found = [data_dir / name for name in CATALOG_FILES if (data_dir / name).exists()]
    if len(found) > 1:
        raise CatalogError(
            f"{data_dir} holds two catalogs, {found[0]} and {found[1]}: keep the one you mean and move "
            "the other out of the data directory"
        )
    if not found:
        raise CatalogError(
            f"no catalog in {data_dir}: expected one of {', '.join(CATALOG_FILES)} "
            "(bring yours with `lensflow data import CATALOG --images DIR`, or try `lensflow data sample`)"
        )
    return found[0]


def category_text(category: str) -> str:
    """A category as a shopper would type it ("T-shirt/top" -> "t-shirt or top")."""
    return category.replace("/", " or ").lower()


def hash_split(product_id: str, val: float = 0.05, test: float = 0.15) -> str:
    """Deterministic split from the product id, for catalogs that do not bring one."""
    u = int.from_bytes(hashlib.sha256(product_id.encode()).digest()[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def load_catalog(data_dir: Path) -> pd.DataFrame:
    """Read the catalog with string ids, a `split` for every row and `row` = 1-based row number."""
    path = catalog_file(data_dir)
    return load_catalog_file(path, path.name)


def read_catalog_table(path: Path, name: str | None = None) -> pd.DataFrame:
    """A catalog file's rows as written (CSV cells as text), with the contract's file-level checks;
    `name` (catalog.parquet / catalog.csv) says its format when the path does not."""
    name = name or path.name
    try:
        df = (
            pd.read_parquet(path)
            if name.endswith(".parquet")
            else pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        )
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure is a catalog error with the file named
        raise CatalogError(f"{path}: cannot be read: {exc}") from exc
    if not name.endswith(".parquet") and not isinstance(df.index, pd.RangeIndex):
        # pandas reads the surplus leading fields as an index when the first row is longer than the header
        raise CatalogError(
            f"{path}: row 1 has more fields than the header's {len(df.columns)} columns "
            "(quote fields that contain commas)"
        )
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: missing required column(s) {missing}; found {list(df.columns)}")
    if "row" in df.columns:
        raise CatalogError(f"{path}: column 'row' is reserved for lensflow's row numbers; rename it")
    if len(df) == 0:
        raise CatalogError(f"{path}: the catalog has no rows")
    return df.reset_index(drop=True)


def load_catalog_file(path: Path, name: str) -> pd.DataFrame:
    """`load_catalog` for one file; `name` (catalog.parquet / catalog.csv) says its format."""
    df = read_catalog_table(path, name)
    for col in ("product_id", "title", "category", "image_path"):
        df[col] = pd.Series([cell_text(v) for v in df[col]], index=df.index, dtype=object)
    # a row without a split (no column, or an empty cell) gets the deterministic hash split
    given = [cell_text(v) for v in df["split"]] if "split" in df.columns else [None] * len(df)
    df["split"] = pd.Series(
        [s if s is not None else hash_split(p or "") for s, p in zip(given, df["product_id"])],
        index=df.index,
        dtype=object,
    )
    df.insert(0, "row", range(1, len(df) + 1))
    return df


def cell_text(value) -> str | None:
    """A cell as text; None for every kind of missing value (None, NaN, NaT, pd.NA)."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    return str(value)
