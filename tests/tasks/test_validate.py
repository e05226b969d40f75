import json
from pathlib import Path

import pandas as pd
import pytest

from lensflow.tasks.validate import ValidationFailed, validate_catalog


def _break(data_dir, df):
    df = df.copy()
    df.loc[1, "product_id"] = df.loc[0, "product_id"]  # duplicate id (both rows)
    df.loc[2, "title"] = "   "  # empty title
    df.loc[3, "category"] = "Hat"  # unknown category
    df.loc[4, "image_path"] = "../outside.png"  # escapes data/
    (data_dir / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    df.loc[5, "image_path"] = "images/broken.png"  # does not decode
    df.loc[6, "image_path"] = "images/missing.png"  # missing file
    df.loc[7, "image_path"] = "/etc/passwd"  # absolute
    df.to_parquet(data_dir / "catalog.parquet", index=False)
    return df


def test_bad_rows_are_quarantined_with_reasons(project, tiny_catalog, tmp_path):
    data = project.data_path
    _break(data, tiny_catalog)
    result = validate_catalog(data, tmp_path / "report", max_bad_fraction=0.5, progress=False)
    q = pd.read_csv(result.quarantine_path).set_index("row")
    assert result.n_rows == len(tiny_catalog)
    assert result.n_rows == len(result.valid) + result.n_quarantined  # nothing silently dropped
    assert set(q.index) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert q.loc[1, "reason"] == q.loc[2, "reason"] == "duplicate product_id"
    assert q.loc[3, "reason"] == "title is empty"
    assert q.loc[4, "reason"].startswith("unknown category 'Hat'")
    assert "escapes the data directory" in q.loc[5, "reason"]
    assert "does not decode" in q.loc[6, "reason"]
    assert "does not exist" in q.loc[7, "reason"]
    assert "is absolute" in q.loc[8, "reason"]
    assert result.docs_path is not None and result.docs_path.exists()
    assert result.report_path.exists() and not result.gx_success


def test_too_many_bad_rows_stop_the_run_with_a_report(project, tiny_catalog, tmp_path):
    _break(project.data_path, tiny_catalog)
    with pytest.raises(ValidationFailed, match=r"(?s)8 of 36 catalog rows failed validation .*row 5 .*escapes") as stop:
        validate_catalog(project.data_path, tmp_path / "report", max_bad_fraction=0.1, progress=False)
    assert (tmp_path / "report" / "quarantine.csv").exists()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["quarantined_rows"] == 8 and Path(report["data_docs"]).exists()  # the GX Data Docs page of this run
    assert (
        "quarantine.csv" in str(stop.value)
        and "report.json" in str(stop.value)
        and report["data_docs"] in str(stop.value)
    )


def test_clean_catalog_passes(project, tiny_catalog, tmp_path):
    result = validate_catalog(project.data_path, tmp_path / "r", progress=False)
    assert result.gx_success and result.n_quarantined == 0 and len(result.valid) == len(tiny_catalog)
    assert result.categories == sorted(tiny_catalog["category"].unique())


def test_prices_must_be_numbers(project, tiny_catalog, tmp_path):
    df = tiny_catalog.assign(price=["19.90"] * len(tiny_catalog))
    df.loc[2, "price"] = "cheap"
    df.loc[3, "price"] = "-5"
    df.to_csv(project.data_path / "catalog.csv", index=False)
    (project.data_path / "catalog.parquet").unlink()
    result = validate_catalog(project.data_path, tmp_path / "r", max_bad_fraction=0.2, progress=False)
    q = pd.read_csv(result.quarantine_path)
    assert q["row"].tolist() == [3, 4] and set(q["reason"]) == {"price is not a non-negative number"}
    assert result.valid["price"].dtype == float and result.valid["price"].eq(19.9).all()


def test_messages_name_the_value_and_the_likely_fix(project, tiny_catalog, tmp_path, caplog):
    """A misspelt category names the closest known one, a case mismatch the file that does exist, and a
    decoder error the path relative to data/ (never the absolute path); GX prints nothing about temp dirs."""
    import logging

    data = project.data_path
    df = tiny_catalog.copy()
    df.loc[0, "category"] = "blue-shoe"  # known: "Blue shoe"
    df.loc[1, "category"] = "red shirt"  # known: "Red shirt" (case only)
    df.loc[2, "category"] = "Umbrella"  # nothing close
    src = data / df.loc[3, "image_path"]
    src.rename(src.with_name(src.name.upper()))  # images/p0003.png -> images/P0003.PNG
    (data / "images" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    df.loc[4, "image_path"] = "images/logo.svg"
    df.to_parquet(data / "catalog.parquet", index=False)
    caplog.set_level(logging.INFO)
    result = validate_catalog(data, tmp_path / "report", max_bad_fraction=0.5, progress=False)
    q = pd.read_csv(result.quarantine_path).set_index("row")
    assert "unknown category 'blue-shoe': did you mean 'Blue shoe'?" in q.loc[1, "reason"]
    assert "unknown category 'red shirt': did you mean 'Red shirt'?" in q.loc[2, "reason"]
    assert "unknown category 'Umbrella'" in q.loc[3, "reason"] and "did you mean" not in q.loc[3, "reason"]
    upper = "images/" + src.name.upper()
    assert (
        f"'{df.loc[3, 'image_path']}' does not exist; '{upper}' does (file names are case-sensitive"
        in q.loc[4, "reason"]
    )
    assert "'images/logo.svg' does not decode" in q.loc[5, "reason"]
    assert (
        str(data) not in "".join(q["reason"])
        and str(data) not in result.report_path.read_text().split('"quarantine"')[0]
    )
    assert "temporary directory" not in caplog.text
