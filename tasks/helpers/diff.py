"""What changed between two DVC versions of the catalog: added, removed, changed image, changed text.

File contents are compared by the md5s DVC already computed (the `.dir` manifests in the DVC cache), so
nothing is re-hashed; the old catalog table is read back from the cache by its md5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lensflow.core.dvc import DvcError, run_dvc
from lensflow.tasks.helpers.catalog import CATALOG_FILES, cell_text, load_catalog_file

TEXT_COLUMNS = ("title", "category", "description", "color", "brand", "price", "split")


@dataclass
class CatalogDiff:
    added: list[str]
    removed: list[str]
    changed_image: list[str]  # image bytes (or image_path) differ: re-embed
    changed_text: list[str]  # only metadata differs: update the row, keep its vector

    @property
    def to_embed(self) -> list[str]:
        return self.added + self.changed_image

    @property
    def n_changes(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed_image) + len(self.changed_text)

    def as_dict(self) -> dict:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed_image": len(self.changed_image),
            "changed_text": len(self.changed_text),
        }


def diff_catalogs(
    old: pd.DataFrame, new: pd.DataFrame, old_files: dict[str, str], new_files: dict[str, str]
) -> CatalogDiff:
    """Pure: rows keyed by product_id; an image counts as changed when its path or its file md5 differs."""
    cols = [c for c in TEXT_COLUMNS if c in old.columns or c in new.columns]

    def keyed(df: pd.DataFrame, files: dict[str, str]) -> pd.DataFrame:
        out = pd.DataFrame({"product_id": df["product_id"].astype(str), "image_path": df["image_path"].astype(str)})
        out["image_md5"] = out["image_path"].map(files)
        for c in cols:
            out[c] = df[c].map(cell_text) if c in df.columns else None
        return out.set_index("product_id")

    a, b = keyed(old, old_files), keyed(new, new_files)
    added = sorted(set(b.index) - set(a.index))
    removed = sorted(set(a.index) - set(b.index))
    common = a.index.intersection(b.index).sort_values()
    a, b = a.loc[common], b.loc[common]
    image = (a["image_path"] != b["image_path"]) | (a["image_md5"] != b["image_md5"]) | b["image_md5"].isna()
    text = pd.Series(False, index=common)
    for c in cols:
        text |= ~((a[c] == b[c]) | (a[c].isna() & b[c].isna()))
    return CatalogDiff(added, removed, common[image].tolist(), common[~image & text].tolist())


def cache_path(root: Path, md5: str) -> Path:
    h = md5.removesuffix(".dir")
    return Path(root) / ".dvc" / "cache" / "files" / "md5" / h[:2] / (h[2:] + (".dir" if md5.endswith(".dir") else ""))


def manifest(root: Path, md5: str) -> dict[str, str]:
    """relpath -> md5 of every file in a DVC-tracked directory version (fetched from the remote if needed)."""
    path = cache_path(root, md5)
    if not path.exists():
        pointer = Path(root) / ".dvc" / "tmp" / f"fetch-{md5.removesuffix('.dir')}.dvc"
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(f"outs:\n- md5: {md5}\n  hash: md5\n  path: {pointer.stem}\n")
        try:
            run_dvc(root, "fetch", "-q", str(pointer))
        finally:
            pointer.unlink(missing_ok=True)
    if not path.exists():
        raise DvcError(f"data version {md5} is neither in the DVC cache nor on the remote")
    return {e["relpath"]: e["md5"] for e in json.loads(path.read_text())}


def catalog_at(root: Path, files: dict[str, str]) -> pd.DataFrame:
    """The catalog table of a data version, read from the DVC cache."""
    for name in CATALOG_FILES:
        if name in files:
            return load_catalog_file(cache_path(root, files[name]), name)
    raise DvcError(f"no catalog file ({', '.join(CATALOG_FILES)}) in that data version")
