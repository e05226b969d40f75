"""Property-based fuzzing of catalog loading and validation (hypothesis).

Whatever bytes sit in data/catalog.csv or data/catalog.parquet, `load_catalog` either returns a catalog
whose rows are all accounted for or raises CatalogError naming the file: never another exception.
`validate_catalog` on tiny fuzzed catalogs puts every row either in `valid` or in quarantine.

LENSFLOW_FUZZ_EXAMPLES sets the inputs per loading test (default 200); validation runs a tenth of that
(a Great Expectations run costs ~0.3 s). Each test counts the inputs it really exercised.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lensflow.tasks.helpers.catalog import OPTIONAL, REQUIRED, SPLITS, CatalogError, hash_split, load_catalog

N = int(os.environ.get("LENSFLOW_FUZZ_EXAMPLES", "200"))
N_VALIDATE = max(10, N // 10)


def fuzz_settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


# ---------------------------------------------------------------------------------------------- inputs
NASTY = [
    "",
    " ",
    "\t",
    "\x00",
    "a\x00b",
    "nan",
    "NaN",
    "NA",
    "null",
    "None",
    "NaT",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "0",
    "9" * 400,
    "1" * 5000,
    '"',
    '""',
    "'",
    ",",
    "a,b",
    "\n",
    "a\nb",
    "\r\n",
    "\r",
    "a\rb",
    "\ufeff",
    "\ufeffx",
    "é",
    "日本語",
    "\U0001f600",
    "\u202e",
    "\\",
    "#comment",
    "'; DROP TABLE x; --",
    "../../etc/passwd",
    "/etc/passwd",
    "images/a.png",
    "train",
    "val",
    "test",
    " train",
    "TRAIN",
    "holdout",
    "0x10",
    "1,5",
    "12.50",
    "-0.0",
    "x" * 300,
]
cells = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=20),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
extra_names = st.sampled_from([*OPTIONAL, "extra", "ünïcode", "a b", "Unnamed: 0", "product_id.1", "x" * 100])
full_columns = (
    st.lists(extra_names, max_size=4, unique=True)
    .map(lambda extra: [*REQUIRED, *(e for e in extra if e not in REQUIRED)])
    .flatmap(st.permutations)
)
any_columns = st.lists(st.sampled_from(REQUIRED), unique=True).flatmap(  # required ones dropped, names repeated
    lambda req: st.lists(st.sampled_from([*REQUIRED, "row", ""]) | extra_names, max_size=4).map(
        lambda extra: [*req, *extra]
    )
)
columns = st.one_of(full_columns, full_columns, any_columns.flatmap(st.permutations))


@st.composite
def table(draw, cols=columns, min_rows=0, max_rows=6):
    names = draw(cols)
    rows = draw(
        st.lists(st.lists(cells, min_size=len(names), max_size=len(names)), min_size=min_rows, max_size=max_rows)
    )
    return names, rows


def to_csv(names, rows, quoting=csv.QUOTE_MINIMAL, terminator="\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=quoting, lineterminator=terminator)
    w.writerow(names)
    w.writerows(rows)
    return buf.getvalue()


GOOD_CSV = to_csv(
    list(REQUIRED) + ["split", "price"],
    [[f"p{i}", f"Red shirt {i}", "Red shirt", f"images/p{i}.png", SPLITS[i % 3], f"{9.5 + i}"] for i in range(4)],
).encode()


@st.composite
def mutated(draw, base: bytes):
    """A valid file with a few byte-level edits: flips, inserts of tricky bytes, deletions, truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b'"',
                        b",",
                        b"\n",
                        b"\r",
                        b"\xff",
                        b"\xef\xbb\xbf",
                        b"\xc3",
                        b"\\",
                        b",,,,,,",
                        b'"\n"',
                        b"\xe2\x80\xae",
                    ]
                )
                | st.binary(max_size=8)
            )
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[i:]
        elif op == "dup":
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace") if encoding != "utf-8-bom" else b"\xef\xbb\xbf" + text.encode()


csv_bytes = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=400).map(str.encode),
    st.text(alphabet=st.sampled_from(list(',"\n\r\x00 \tabc\ufeffé')), max_size=200).map(str.encode),
    st.builds(
        lambda t, e: encode(to_csv(*t), e),
        table(),
        st.sampled_from(["utf-8", "utf-8-bom", "utf-16", "latin-1", "cp1252", "utf-32", "shift_jis"]),
    ),
    mutated(GOOD_CSV),
    st.builds(lambda t: to_csv(*t).encode(), table(full_columns)).flatmap(mutated),
)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


GOOD_PARQUET = parquet_bytes(pd.read_csv(io.BytesIO(GOOD_CSV), dtype=str))
VALUES = {  # the types a parquet column can carry, each with missing values
    "text": st.one_of(st.none(), cells),
    "int": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "float": st.one_of(st.none(), st.floats()),
    "bool": st.one_of(st.none(), st.booleans()),
    "bytes": st.one_of(st.none(), st.binary(max_size=8)),
    "list": st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=2)),
}


@st.composite
def parquet_frame(draw):
    base = draw(st.one_of(st.just(list(REQUIRED)), st.lists(st.sampled_from(REQUIRED), unique=True)))
    extra = draw(st.lists(st.sampled_from([*OPTIONAL, "extra", "row", "ünïcode"]), unique=True, max_size=3))
    names = draw(st.permutations([*base, *extra]))
    n = draw(st.integers(0, 5))
    data = {
        name: [draw(VALUES[kind]) for _ in range(n)]
        for name in names
        for kind in [draw(st.sampled_from(sorted(VALUES)))]
    }
    frame = pd.DataFrame(data) if names else pd.DataFrame(index=range(n))
    if draw(st.booleans()) and "category" in frame:
        frame["category"] = frame["category"].map(as_text).astype("category")  # dictionary-encoded column
    return frame


def as_text(value) -> str | None:
    return None if value is None else str(value)


def safe_parquet(frame: pd.DataFrame) -> bytes:
    try:
        return parquet_bytes(frame)
    except Exception:  # noqa: BLE001 - a frame pyarrow cannot write (mixed types): write its text instead
        return parquet_bytes(frame.map(as_text))


parquet_inputs = st.one_of(  # (bytes, rows it holds when it is a readable table)
    parquet_frame().map(lambda f: (safe_parquet(f), len(f))),
    parquet_frame().map(lambda f: (safe_parquet(f), len(f))),
    mutated(GOOD_PARQUET).map(lambda b: (b, None)),
    st.binary(max_size=600).map(lambda b: (b, None)),
    st.binary(max_size=64).map(lambda b: (b"PAR1" + b + b"PAR1", None)),
)


# ------------------------------------------------------------------------------------------- oracle
def check_loaded(path: Path, raw: bytes, expected: tuple[list, list] | None = None, n_rows: int | None = None) -> str:
    """Load data/<path.name>: 'ok' or 'error', after checking the catalog's invariants or the error's message."""
    try:
        df = load_catalog(path.parent)
    except CatalogError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        assert expected is None, f"a well-formed catalog was refused: {exc}"
        return "error"
    assert isinstance(df, pd.DataFrame) and len(df) >= 1
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    assert df["row"].tolist() == list(range(1, len(df) + 1)), "row numbers must be 1..n"
    assert set(REQUIRED) | {"split", "row"} <= set(df.columns)
    for col in REQUIRED:
        assert all(v is None or isinstance(v, str) for v in df[col]), f"{col}: {df[col].tolist()!r}"
    assert all(isinstance(v, str) for v in df["split"]), f"every row gets a split: {df['split'].tolist()!r}"
    assert n_rows is None or len(df) == n_rows, f"{n_rows} rows written, {len(df)} read"
    if path.suffix == ".csv":  # no row appears from nowhere: each one needs a line of its own
        assert len(df) <= raw.count(b"\n") + raw.count(b"\r") + 1
    if expected is not None:  # a well-formed file: every row and cell comes back as written
        names, rows = expected
        assert len(df) == len(rows), f"{len(rows)} rows written, {len(df)} read"
        for i, written in enumerate(rows):
            cell = dict(zip(names, written))
            for col in REQUIRED:
                assert df[col].iloc[i] == (cell[col] or None), (col, i, cell[col], df[col].iloc[i])
            want_split = cell.get("split") or hash_split(cell["product_id"] or "")
            assert df["split"].iloc[i] == want_split
    return "ok"


class Tally:
    def __init__(self):
        self.inputs = 0
        self.outcomes: dict[str, int] = {}

    def add(self, outcome: str) -> None:
        self.inputs += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def fresh_dir(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


# -------------------------------------------------------------------------------------------- tests
def test_fuzz_csv_catalog_loads_or_raises_catalog_error(tmp_path):
    tally = Tally()

    @fuzz_settings(N)
    @given(csv_bytes)
    def run(raw: bytes):
        data = fresh_dir(tmp_path)
        try:
            (data / "catalog.csv").write_bytes(raw)
            tally.add(check_loaded(data / "catalog.csv", raw))
        finally:
            shutil.rmtree(data)

    run()
    print(f"csv catalogs: {tally.inputs} inputs, {tally.outcomes}")
    assert tally.inputs >= N and set(tally.outcomes) == {"ok", "error"}


def test_fuzz_well_formed_csv_round_trips_every_row_and_cell(tmp_path):
    """Properly quoted CSV (any cell text: NUL, quotes, newlines, unicode, huge numbers; BOM or not): loaded
    exactly, with no row lost, added or shifted, and an empty split cell gets the hash split."""
    tally = Tally()

    @fuzz_settings(N)
    @given(
        table(full_columns, min_rows=1),
        st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
        st.sampled_from(["\n", "\r\n"]),
        st.booleans(),
    )
    def run(t, quoting, terminator, bom):
        names, rows = t
        if "row" in names or len(set(names)) < len(names):
            return
        if terminator == "\n" and any("\r" in c for r in rows for c in r):
            quoting = csv.QUOTE_ALL  # Python's writer leaves a bare CR unquoted with a "\n" terminator: malformed CSV
        raw = (b"\xef\xbb\xbf" if bom else b"") + to_csv(names, rows, quoting, terminator).encode()
        data = fresh_dir(tmp_path)
        try:
            (data / "catalog.csv").write_bytes(raw)
            tally.add(check_loaded(data / "catalog.csv", raw, expected=(names, rows)))
        finally:
            shutil.rmtree(data)

    run()
    print(f"well-formed csv catalogs: {tally.inputs} inputs, {tally.outcomes}")
    assert tally.inputs >= N * 0.9 and tally.outcomes == {"ok": tally.inputs}


def test_fuzz_parquet_catalog_loads_or_raises_catalog_error(tmp_path):
    tally = Tally()

    @fuzz_settings(N)
    @given(parquet_inputs)
    def run(case):
        raw, n_rows = case
        data = fresh_dir(tmp_path)
        try:
            (data / "catalog.parquet").write_bytes(raw)
            tally.add(check_loaded(data / "catalog.parquet", raw, n_rows=n_rows))
        finally:
            shutil.rmtree(data)

    run()
    print(f"parquet catalogs: {tally.inputs} inputs, {tally.outcomes}")
    assert tally.inputs >= N and set(tally.outcomes) == {"ok", "error"}


# ------------------------------------------------------------------------------------ validation
CATEGORIES = ["Red shirt", "Green bag"]
IMAGE_PATHS = [
    "images/ok.png",
    "images/ok.jpg",
    "images/ok.png",
    "images/broken.png",
    "images/empty.png",
    "images/sub",
    "images/missing.png",
    "../outside.png",
    "/etc/passwd",
    "images/link.png",
    "images/a\x00b.png",
    "x" * 300,
    "images/" + "y/" * 200 + "z.png",
    "",
    " ",
    None,
    "images/../images/ok.png",
    "images/bomb.png",
]


@st.composite
def validation_catalog(draw):
    n = draw(st.integers(1, 6))
    ids = st.one_of(st.sampled_from(["p1", "p2", "p3", "p1", "", " ", None, "\x00", "é"]), cells)
    rows = {
        "product_id": [draw(ids) for _ in range(n)],
        "title": [draw(st.one_of(st.sampled_from(["Red shirt 1", "", " \t ", None]), cells)) for _ in range(n)],
        "category": [draw(st.one_of(st.sampled_from([*CATEGORIES, None, ""]), cells)) for _ in range(n)],
        "image_path": [draw(st.sampled_from(IMAGE_PATHS)) for _ in range(n)],
    }
    if draw(st.booleans()):
        rows["split"] = [draw(st.one_of(st.sampled_from([*SPLITS, None, "", "holdout"]), cells)) for _ in range(n)]
    if draw(st.booleans()):
        rows["price"] = [
            draw(
                st.one_of(
                    st.sampled_from(["9.5", "0", "-1", "inf", "-inf", "nan", "1e400", "1e308", "", None, "cheap"]),
                    cells,
                )
            )
            for _ in range(n)
        ]
    return pd.DataFrame(rows), draw(st.sampled_from(["csv", "parquet"]))


def make_images(data: Path) -> None:
    images = data / "images"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (12, 9), (200, 30, 30)).save(images / "ok.png")
    Image.new("RGB", (12, 9), (30, 170, 60)).save(images / "ok.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "empty.png").write_bytes(b"")
    (data.parent / "outside.png").write_bytes((images / "ok.png").read_bytes())
    (images / "link.png").symlink_to(data.parent / "outside.png")
    from tests.faults import _png_claiming

    (images / "bomb.png").write_bytes(_png_claiming(10_000, 10_000))


def test_fuzz_validation_accounts_for_every_row(tmp_path, monkeypatch):
    from lensflow.tasks.validate import ValidationFailed, image_problem, validate_catalog

    gx_tmp = tmp_path / "gx-tmp"  # Great Expectations' ephemeral docs dirs, kept out of the shared /tmp
    gx_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(gx_tmp))
    tally = Tally()

    @fuzz_settings(N_VALIDATE)
    @given(validation_catalog(), st.sampled_from([None, CATEGORIES]), st.sampled_from([1.0, 0.5, 0.0]))
    def run(catalog, categories, max_bad):
        df, fmt = catalog
        root = fresh_dir(tmp_path)
        data, report = root / "data", root / "report"
        try:
            make_images(data)
            if fmt == "csv":
                (data / "catalog.csv").write_text(
                    df.to_csv(index=False, lineterminator="\r\n")
                )  # "\r\n": CRs get quoted
            else:
                df.to_parquet(data / "catalog.parquet", index=False)
            try:
                result = validate_catalog(data, report, categories=categories, max_bad_fraction=max_bad, progress=False)
            except CatalogError as exc:
                assert "catalog." in str(exc) and str(data) in str(exc)
                tally.add("catalog error")
                return
            except ValidationFailed as exc:
                rep = json.loads((report / "report.json").read_text())
                assert rep["catalog_rows"] == len(df) == rep["valid_rows"] + rep["quarantined_rows"]
                assert rep["quarantined_rows"] > max_bad * len(df) and str(report / "quarantine.csv") in str(exc)
                assert len(pd.read_csv(report / "quarantine.csv")) == rep["quarantined_rows"]
                tally.add("stopped")
                return
            assert result.n_rows == len(df) == len(result.valid) + result.n_quarantined, "a row was lost"
            q = pd.read_csv(result.quarantine_path, keep_default_na=False)
            assert len(q) == result.n_quarantined and q["reason"].str.len().gt(0).all()
            v = result.valid
            assert set(v["row"]).isdisjoint(q["row"]) and set(v["row"]) | set(q["row"]) == set(range(1, len(df) + 1))
            assert v["product_id"].map(lambda p: isinstance(p, str)).all() and v["product_id"].is_unique
            assert v["title"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
            assert v["split"].isin(SPLITS).all()
            assert all(image_problem(data, p) is None for p in v["image_path"])
            if categories:
                assert v["category"].isin(categories).all()
            if "price" in v.columns:
                assert v["price"].map(lambda p: math.isnan(p) or 0 <= p < math.inf).all(), v["price"].tolist()
            tally.add("validated" if result.n_quarantined == 0 else "quarantined")
        finally:
            shutil.rmtree(root)

    run()
    print(f"validated catalogs: {tally.inputs} inputs, {tally.outcomes}")
    assert tally.inputs >= N_VALIDATE and "quarantined" in tally.outcomes


@pytest.mark.parametrize(
    "raw, outcome, message",
    [
        (
            b"row,product_id,title,category,image_path\n1,a,t,c,i.png\n",
            "error",
            "column 'row' is reserved",
        ),  # was ValueError
        (
            b"product_id,title,category,image_path\na,t,c,i.png,surplus,fields\n",
            "error",
            "more fields than the header",
        ),  # was shifted
        (b"product_id,title,category,image_path\na,t,c,i.png\n,t,c,i.png\n", "ok", None),  # was AttributeError (NaN id)
        (
            b"product_id,title,category,image_path,split\na,t,c,i.png,\n",
            "ok",
            None,
        ),  # was a NaN split, in no split at all
    ],
)
def test_fuzz_findings_stay_fixed(tmp_path, raw, outcome, message):
    """Inputs the fuzzers found mishandled by load_catalog before the fix."""
    (tmp_path / "catalog.csv").write_bytes(raw)
    assert check_loaded(tmp_path / "catalog.csv", raw) == outcome
    if message:
        with pytest.raises(CatalogError, match=message):
            load_catalog(tmp_path)


@pytest.mark.parametrize("image_path", ["images/a\x00b.png", "x" * 300])
def test_fuzz_findings_in_image_paths_are_quarantine_reasons(tmp_path, image_path):
    """A NUL byte or an over-long name in image_path made validation raise (ValueError, OSError) before the fix."""
    from lensflow.tasks.validate import image_problem

    assert "is not a usable file name" in image_problem(tmp_path, image_path)
