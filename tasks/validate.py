"""Validate the catalog with a Great Expectations suite; quarantine failing rows with a reason."""

from __future__ import annotations

import difflib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image
from pydantic import BaseModel, Field

from lensflow.core.complements import COMPLEMENTS_FILE, complement_problems, read_complements
from lensflow.core.settings import Settings
from lensflow.tasks import stage
from lensflow.tasks.helpers.catalog import SPLITS, load_catalog
from lensflow.tasks.helpers.progress import progress_bar


class CatalogPolicy(BaseModel):
    """What a run accepts from a catalog: the one home of these defaults (the CLI, the flows and
    `lensflow data import` defer to it when not given a value)."""

    max_bad_fraction: float = Field(
        0.05, ge=0, le=1, description="a run stops when more of the catalog's rows than this fail validation"
    )
    max_image_pixels: int = Field(
        50_000_000,
        ge=1,
        description="a catalog image above this many pixels is quarantined (a decompression bomb); "
        "photos sent to the search service have their own limit, LENSFLOW_MAX_IMAGE_PIXELS",
    )

    def bad_fraction(self, value: float | None) -> float:
        """`value`, or the policy's when not given."""
        return self.max_bad_fraction if value is None else value


POLICY = CatalogPolicy()


class ValidationFailed(RuntimeError):
    """Too many bad rows: the run stops, with the report naming them."""


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    n_rows: int
    n_quarantined: int
    reasons: dict[str, int]
    report_path: Path
    quarantine_path: Path
    docs_path: Path | None
    gx_success: bool
    categories: list[str] = field(default_factory=list)


def image_problem(data_dir: Path, image_path: str | None) -> str | None:
    """None when `image_path` is a decodable image inside data_dir, else the reason."""
    if not image_path or not str(image_path).strip():
        return "image_path is empty"
    rel = Path(image_path)
    if rel.is_absolute():
        return f"image_path {image_path!r} is absolute; it must be relative to the data directory"
    root = data_dir.resolve()
    try:
        full = (root / rel).resolve()
        if not full.is_relative_to(root):
            return f"image_path {image_path!r} escapes the data directory"
        if not full.exists():
            other = case_variant(root, rel)
            return f"image file {image_path!r} does not exist" + (
                f"; {other!r} does (file names are case-sensitive: fix image_path or rename the file)" if other else ""
            )
        if not full.is_file():
            return f"image_path {image_path!r} is not a regular file"
    except (OSError, ValueError) as exc:  # a NUL byte, a name longer than the OS allows, ...
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"image_path {image_path!r} is not a usable file name ({why})"
    try:
        # No warnings filters here: they are process-global and this runs in threads. PIL warns on open
        # above 89M pixels; images over our own, lower limit are refused before they are decoded.
        with Image.open(full) as im:
            w, h = im.size
            if w * h > POLICY.max_image_pixels:
                return f"image {image_path!r} is {w}x{h}: more than {POLICY.max_image_pixels:,} pixels"
            im.load()
    except Exception as exc:  # noqa: BLE001 - every decoder failure is a quarantine reason
        why = str(exc).replace(str(full), image_path).replace(str(root) + os.sep, "")  # PIL names the absolute path
        return f"image {image_path!r} does not decode: {type(exc).__name__}: {why}"
    return None


def case_variant(root: Path, rel: Path) -> str | None:
    """The existing file that `rel` names but for letter case (`Images/Shirt.JPG` for `images/shirt.jpg`), or None."""
    here = root
    for part in rel.parts:
        if part in ("..", "."):
            return None
        try:
            match = next((p for p in here.iterdir() if p.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        here = match
    return here.relative_to(root).as_posix() if here.is_file() else None


def closest_category(value: str, categories: list[str]) -> str | None:
    """The known category a misspelt one most likely means ('trouser' -> 'Trouser', 'tshirt' -> 'T-shirt')."""
    by_key = {"".join(ch for ch in c.lower() if ch.isalnum()): c for c in categories}
    key = "".join(ch for ch in value.lower() if ch.isalnum())
    if key in by_key:
        return by_key[key]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
    return by_key[close[0]] if close else None


def unknown_category(value: str, categories: list[str]) -> str:
    """The quarantine reason for a category not in categories.json, with the likely fix."""
    guess = closest_category(value, categories)
    return (
        f"unknown category {value!r}"
        + (f": did you mean {guess!r}?" if guess else "")
        + " (known categories are listed in categories.json)"
    )


def check_images(data_dir: Path, paths: list, workers: int = 4, progress: bool = True) -> list[str | None]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(lambda p: image_problem(data_dir, p), paths, chunksize=256)
        return list(progress_bar(it, total=len(paths), desc="check images", unit="img", disable=not progress))


def _suite_results(
    df: pd.DataFrame, categories: list[str] | None, docs_dir: Path
) -> tuple[bool, dict[str, list[int]], Path | None]:
    """Run the GX suite on df; return success, {reason: [row numbers]} and the Data Docs index."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # no default temporary docs site (GX logs "Created temporary directory ..." for it on every run): ours is below
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = {"globally": False}
    site = "lensflow_docs"
    context.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    asset = context.data_sources.add_pandas("catalog").add_dataframe_asset("catalog")
    batch_def = asset.add_batch_definition_whole_dataframe("all rows")
    checks: list[tuple[str, object]] = [
        ("product_id is missing", gxe.ExpectColumnValuesToNotBeNull(column="product_id")),
        ("duplicate product_id", gxe.ExpectColumnValuesToBeUnique(column="product_id")),
        ("title is missing", gxe.ExpectColumnValuesToNotBeNull(column="title")),
        ("title is empty", gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=r"^\s*$")),
        ("category is missing", gxe.ExpectColumnValuesToNotBeNull(column="category")),
        (
            f"split is not one of {list(SPLITS)}",
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        ),
        ("image problem", gxe.ExpectColumnValuesToBeNull(column="image_problem")),
    ]
    if "price" in df.columns:
        checks.append(("price is not a non-negative number", gxe.ExpectColumnValuesToBeNull(column="price_problem")))
    if categories:
        checks.append(("unknown category", gxe.ExpectColumnValuesToBeInSet(column="category", value_set=categories)))
    suite = context.suites.add(gx.ExpectationSuite(name="catalog"))
    reason_of = {}
    for reason, expectation in checks:
        reason_of[suite.add_expectation(expectation).id] = reason
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="catalog", data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="catalog",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[site])],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row"]},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    result = next(iter(run.run_results.values()))
    failing: dict[str, list[int]] = {}
    for res in result.results:
        reason = reason_of[res.expectation_config.id]
        rows = [int(r["row"]) for r in (res.result.get("unexpected_index_list") or [])]
        if rows:
            failing[reason] = rows
    index = docs_dir / "index.html"
    return bool(result.success), failing, index if index.exists() else None


def validate_catalog(
    data_dir: Path,
    report_dir: Path,
    categories: list[str] | None = None,
    max_bad_fraction: float | None = None,
    progress: bool = True,
    known_good_images: set[str] | None = None,
) -> ValidationResult:
    """Check every row; write report.json, quarantine.csv and Data Docs under report_dir.

    Categories default to data/categories.json when it exists. Raises ValidationFailed when
    more than `max_bad_fraction` (default: the catalog policy's) of the rows fail (the report is written first).
    `known_good_images`: image paths whose bytes passed validation in an earlier data version
    (same DVC md5); they are not decoded again. Every other check still runs on every row.
    """
    max_bad_fraction = POLICY.bad_fraction(max_bad_fraction)
    df = load_catalog(data_dir)
    if categories is None and (data_dir / "categories.json").exists():
        categories = json.loads((data_dir / "categories.json").read_text())
    if "price" in df.columns:
        price = pd.to_numeric(df["price"], errors="coerce")
        bad_price = (price.isna() & df["price"].notna()) | (price < 0) | price.isin([float("inf")])  # inf: not JSON
        df["price_problem"] = bad_price.map({True: "bad price", False: None})
    known = known_good_images or set()
    todo = [p not in known for p in df["image_path"]]
    df["image_problem"] = None
    if any(todo):
        df.loc[todo, "image_problem"] = check_images(
            data_dir, df.loc[todo, "image_path"].tolist(), workers=min(8, (os.cpu_count() or 2) * 2), progress=progress
        )
    report_dir.mkdir(parents=True, exist_ok=True)
    success, failing, docs = _suite_results(df, categories, report_dir / "data_docs")
    reasons_by_row: dict[int, list[str]] = {}
    problems = dict(zip(df["row"], df["image_problem"]))
    category_of = dict(zip(df["row"], df["category"]))
    for reason, rows in failing.items():
        for r in rows:
            reasons_by_row.setdefault(r, []).append(
                problems[r]
                if reason == "image problem"
                else unknown_category(category_of[r], categories)
                if reason == "unknown category"
                else reason
            )
    bad = df[df["row"].isin(reasons_by_row)].copy()
    bad["reason"] = bad["row"].map(lambda r: "; ".join(reasons_by_row[r]))
    quarantine_path = report_dir / "quarantine.csv"
    # CRLF lines: the csv writer then quotes a bare CR inside a value, which would otherwise split the row on reading
    bad[["row", "product_id", "image_path", "reason"]].to_csv(quarantine_path, index=False, lineterminator="\r\n")
    counts = {reason: len(rows) for reason, rows in failing.items()}
    report = {
        "catalog_rows": len(df),
        "valid_rows": len(df) - len(bad),
        "quarantined_rows": len(bad),
        "max_bad_fraction": max_bad_fraction,
        "gx_success": success,
        "failures": counts,
        "categories": categories,
        "quarantine": str(quarantine_path),
        "data_docs": str(docs) if docs else None,
    }
    report_path = report_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2))
    if len(bad) > max_bad_fraction * len(df):
        examples = "\n".join(
            f"  row {r.row} ({r.product_id!r}, {r.image_path!r}): {r.reason}" for r in bad.head(10).itertuples()
        )
        raise ValidationFailed(
            f"{len(bad)} of {len(df)} catalog rows failed validation (limit {max_bad_fraction:.0%}); "
            f"see {quarantine_path} (every bad row and why), {report_path}"
            + (f" and the Great Expectations Data Docs {docs}" if docs else "")
            + f". First failures:\n{examples}"
        )
    valid = df[~df["row"].isin(reasons_by_row)].drop(columns=["image_problem", "price_problem"], errors="ignore")
    if "price" in valid.columns:
        valid["price"] = pd.to_numeric(valid["price"])
    valid = valid.reset_index(drop=True)
    found = sorted(valid["category"].unique())
    check_complements(data_dir, categories or found)
    return ValidationResult(
        valid, len(df), len(bad), counts, report_path, quarantine_path, docs, success, categories or found
    )


def check_complements(data_dir: Path, categories: list[str]) -> None:
    """data/complements.json ("complete the look") may only name the catalog's categories: ValidationFailed
    naming each unknown one (with the closest category) and the file."""
    try:
        problems = complement_problems(read_complements(data_dir), categories)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    if problems:
        raise ValidationFailed(
            f"{data_dir / COMPLEMENTS_FILE}: " + "; ".join(problems) + ". Fix the file (it lists, for each category, "
            "the categories that complete its look), or remove it"
        )


def report_dir(s: Settings, data_md5: str) -> Path:
    """Where a catalog version's validation report goes (reports/validation/<md5>)."""
    return s.path(s.reports_dir) / "validation" / data_md5.removesuffix(".dir")


validate_catalog_task = stage(validate_catalog, name="validate-catalog")
