"""Every fault of tests/faults.py -> its outcome: quarantined with a reason naming row and file,
accepted (unusual but valid images), or the run stopped with the file named."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_synthetic_catalog
from tests.faults import FILE_FAULTS, ROW_FAULTS


def test_each_row_fault_is_quarantined_with_its_reason_and_nothing_is_lost(project, tmp_path):
    from lensflow.models.encoder import build_encoder
    from lensflow.tasks.embed import embed_catalog
    from lensflow.tasks.validate import validate_catalog

    data = project.data_path
    df = write_synthetic_catalog(data, per_category=14)
    expected = {}
    for k, (name, fault) in enumerate(ROW_FAULTS.items()):
        i = 2 * k + 1  # faulted rows are never neighbours: a duplicate id copies the clean row before it
        expected[name] = (i, fault(data, df, i))
    df.to_parquet(data / "catalog.parquet", index=False)

    result = validate_catalog(data, tmp_path / "report", max_bad_fraction=1.0, progress=False)
    q = pd.read_csv(result.quarantine_path).set_index("row")
    assert result.n_rows == len(df) == len(result.valid) + result.n_quarantined  # nothing silently dropped
    valid_ids = set(result.valid["product_id"])
    for name, (i, reason) in expected.items():
        row = i + 1  # 1-based in reports
        if reason is None:
            assert df.loc[i, "product_id"] in valid_ids and row not in q.index, f"{name}: should be accepted"
            continue
        assert row in q.index, f"{name}: row {row} was not quarantined"
        assert reason in q.loc[row, "reason"], f"{name}: {q.loc[row, 'reason']!r}"
        if (
            name.endswith(("image", "file", "bomb (10000x10000 header)", "(2e9 x 1)"))
            or "image_path" in name
            or "symlink" in name
        ):
            assert str(df.loc[i, "image_path"]) in q.loc[row, "reason"], f"{name}: the reason must name the file"
    dup_row = expected["duplicate product_id"][0]
    assert q.loc[dup_row, "reason"] == "duplicate product_id"  # both rows holding the id, the clean one too
    assert set(q.index) == {i + 1 for i, r in expected.values() if r is not None} | {dup_row}

    vectors = embed_catalog(
        build_encoder("tiny"), result.valid, data, progress=False
    )  # CMYK, 16-bit, palette, alpha embed
    assert vectors.shape[0] == len(result.valid) and np.isfinite(vectors).all()


@pytest.mark.parametrize("name", FILE_FAULTS)
def test_an_unusable_catalog_file_stops_with_the_file_named(project, name):
    from lensflow.tasks.helpers.catalog import CatalogError, load_catalog

    data = project.data_path
    df = write_synthetic_catalog(data, per_category=2)
    message = FILE_FAULTS[name](data, df)
    with pytest.raises(CatalogError) as err:
        load_catalog(data)
    assert message in str(err.value) and "catalog." in str(err.value)


def test_wrong_column_types_are_read_as_text_not_dropped(project, tmp_path):
    from lensflow.tasks.validate import validate_catalog

    data = project.data_path
    df = write_synthetic_catalog(data, per_category=4)
    df["product_id"] = range(100, 100 + len(df))  # integers
    df["title"] = [float(i) if i % 5 else np.nan for i in range(len(df))]  # numbers, one missing
    df.to_parquet(data / "catalog.parquet", index=False)
    result = validate_catalog(data, tmp_path / "r", max_bad_fraction=1.0, progress=False)
    assert result.n_rows == len(df) == len(result.valid) + result.n_quarantined
    assert result.valid["product_id"].map(type).eq(str).all() and "101" in set(result.valid["product_id"])
    q = pd.read_csv(result.quarantine_path)
    assert set(q["reason"]) == {"title is missing"} and len(q) == (np.arange(len(df)) % 5 == 0).sum()
