"""Bring a user's own catalog into the project: their catalog file and photos copied (or hard-linked) into data/.

The rows are taken as they are (nothing dropped, nothing fixed silently): what validation will quarantine
is reported by `lensflow data import` from the same checks a retrain runs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lensflow.tasks.helpers.catalog import CATALOG_FILES, CatalogError, read_catalog_table
from lensflow.tasks.helpers.progress import progress_bar
from lensflow.tasks.sample import describe_files, foreign_files, remove_files, sample_files
from lensflow.tasks.validate import POLICY, case_variant


@dataclass
class Imported:
    catalog: Path  # the catalog file written into data/
    rows: int
    images: int  # image files copied or linked
    image_bytes: int
    categories: list[str]
    categories_from: str  # "catalog" or the --categories file
    replaced_sample: int  # files of lensflow's sample catalog that were removed first
    linked: bool
    missing: list[str] = field(default_factory=list)  # "row N: why" for images that could not be brought in


def read_categories(path: Path) -> list[str]:
    """A categories file: a JSON list of names, or plain text with one name per line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        names = json.loads(text)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CatalogError(f"{path}: expected a JSON list of category names")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise CatalogError(f"{path}: no category names in it")
    return list(dict.fromkeys(names))


def _place(src: Path, dest: Path, link: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dest)
            return
        except OSError as exc:
            raise CatalogError(
                f"cannot hard-link {src} into {dest.parent} ({exc.strerror}): they are on different "
                "file systems; import without --link to copy the photos"
            ) from exc
    shutil.copy2(src, dest)


def import_catalog(
    catalog: Path,
    images: Path,
    data_dir: Path,
    categories_file: Path | None = None,
    link: bool = False,
    force: bool = False,
    progress: bool = False,
) -> Imported:
    """Copy `catalog` (CSV or parquet; `image_path` relative to `images`, or else to the catalog's folder, or
    absolute inside `images`) and the photos it names into data_dir: data/catalog.<ext>,
    data/images/<path under images> (a leading images/ is not doubled), data/categories.json.

    Refuses (FileExistsError) when data_dir holds files lensflow did not create, unless `force`, which
    deletes exactly those; the files of lensflow's own sample catalog are replaced without asking."""
    catalog, images = catalog.resolve(), images.resolve()
    if not catalog.is_file():
        raise CatalogError(f"{catalog}: no such catalog file")
    if catalog.suffix.lower() not in (".csv", ".parquet"):
        raise CatalogError(f"{catalog}: a catalog is a .csv or .parquet file")
    if not images.is_dir():
        raise CatalogError(f"--images {images}: no such folder")
    if catalog.is_relative_to(data_dir.resolve()) or images.is_relative_to(data_dir.resolve()):
        raise CatalogError(
            f"{catalog} and {images} are already in the data folder {data_dir}: run `lensflow retrain` on it "
            "as it is, or import from a folder outside it"
        )
    df = read_catalog_table(catalog)
    categories = (
        read_categories(categories_file)
        if categories_file
        else sorted({str(c) for c in df["category"] if isinstance(c, str) and c.strip()})
    )
    foreign = foreign_files(data_dir)
    if foreign and not force:
        raise FileExistsError(
            f"{data_dir} already holds files lensflow did not create: {describe_files(data_dir, foreign)}. "
            "Nothing was changed. Move them away, or pass --force to DELETE those "
            f"{len(foreign)} file(s) and import in their place."
        )
    sample = sorted(sample_files(data_dir))
    remove_files(data_dir, [*foreign, *sample])
    data_dir.mkdir(parents=True, exist_ok=True)

    placed: dict[str, str] = {}  # image_path as written -> path in data/
    dest_of: dict[Path, str] = {}  # source file -> path in data/
    taken: set[str] = set()
    missing, n_bytes = [], 0
    for row, value in enumerate(
        progress_bar(df["image_path"], desc="import photos", unit="img", disable=not progress), start=1
    ):
        if not isinstance(value, str) or not value.strip() or value in placed:
            continue
        src = Path(value) if Path(value).is_absolute() else images / value
        if not src.is_file() and (catalog.parent / value).is_file():  # written relative to the catalog's folder
            src = catalog.parent / value
        try:
            rel = src.resolve().relative_to(images)
        except ValueError:
            missing.append(f"row {row}: {value!r} is outside --images {images}")
            continue
        if not src.is_file():
            other = case_variant(images, Path(value)) if not Path(value).is_absolute() else None
            missing.append(
                f"row {row}: {value!r} is not in {images}"
                + (f" ({other!r} is: file names are case-sensitive)" if other else "")
            )
            continue
        if src.resolve() in dest_of:  # the same photo named twice (say, relative and absolute)
            placed[value] = dest_of[src.resolve()]
            continue
        rel = rel.as_posix()
        dest = "images/" + rel.removeprefix("images/")  # DIR/images/x.png -> data/images/x.png, not images/images/
        if dest in taken:
            dest = "images/" + rel
        if dest in taken:
            raise CatalogError(
                f"row {row}: {value!r} and another photo would both be stored as data/{dest}; rename one"
            )
        _place(src, data_dir / dest, link)
        n_bytes += (data_dir / dest).stat().st_size
        placed[value], dest_of[src.resolve()] = dest, dest
        taken.add(dest)
    df["image_path"] = [placed.get(v, v) if isinstance(v, str) else v for v in df["image_path"]]
    out = data_dir / ("catalog.parquet" if catalog.suffix.lower() == ".parquet" else "catalog.csv")
    if out.name == CATALOG_FILES[0]:
        df.to_parquet(out, index=False)
    else:
        df.to_csv(out, index=False)
    (data_dir / "categories.json").write_text(json.dumps(categories, indent=1, ensure_ascii=False) + "\n")
    return Imported(
        out,
        len(df),
        len(dest_of),
        n_bytes,
        categories,
        str(categories_file) if categories_file else "catalog",
        len(sample),
        link,
        missing,
    )


def summary_lines(imp: Imported, data_dir: Path, checked, max_bad_fraction: float | None = None) -> list[str]:
    """What was read and what validation will quarantine (`checked`: a tasks.validate.ValidationResult)."""
    max_bad_fraction = POLICY.bad_fraction(max_bad_fraction)
    counts = pd.Series(checked.valid["category"]).value_counts()
    lines = [
        f"read      {imp.rows} products; {imp.images} photos {'linked' if imp.linked else 'copied'} "
        f"({imp.image_bytes / 1e6:.1f} MB) into {data_dir}, catalog {imp.catalog}",
        f"categories {len(imp.categories)} (from {imp.categories_from}; edit {data_dir / 'categories.json'} to "
        "change them): " + ", ".join(f"{c} {counts.get(c, 0)}" for c in imp.categories),
    ]
    if imp.missing:
        lines.append(f"not found {len(imp.missing)} photos named in the catalog (their rows are quarantined):")
        lines += [f"  {m}" for m in imp.missing[:10]] + (
            [f"  ... and {len(imp.missing) - 10} more"] if len(imp.missing) > 10 else []
        )
    if imp.replaced_sample:
        lines.append(f"replaced  the sample catalog ({imp.replaced_sample} files lensflow had created)")
    if checked.n_quarantined:
        bad = pd.read_csv(checked.quarantine_path, dtype=str, keep_default_na=False)
        lines.append(
            f"quarantine {checked.n_quarantined} of {checked.n_rows} rows will be left out of training and search "
            f"(all of them, with the reason: {checked.quarantine_path}):"
        )
        lines += [f"  row {r.row} ({r.product_id}): {r.reason}" for r in bad.head(10).itertuples()]
        if checked.n_quarantined > 10:
            lines.append(f"  ... and {checked.n_quarantined - 10} more")
        if checked.n_quarantined > max_bad_fraction * checked.n_rows:
            lines.append(
                f"warning   that is more than {max_bad_fraction:.0%} of the rows: `lensflow retrain` will stop "
                "until they "
                "are fixed (import again with --force), or pass it --max-bad-fraction"
            )
    else:
        lines.append(f"valid     all {checked.n_rows} rows pass validation")
    return lines
