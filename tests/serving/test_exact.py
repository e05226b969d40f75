"""The in-memory exact search ranks as LanceDB's exact scan does, and steps aside for filters and big tables."""

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from lensflow.core.index import best_of
from lensflow.serving.exact import ExactIndex
from lensflow.serving.search import Catalog, Filters, by_vector

N, D = 400, 32


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((N, D)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[7] = vecs[3]  # an exact tie: broken by product id, as best_of does
    ids = [f"p{(i * 7919) % 1000:04d}" for i in range(N)]  # table order is not id order
    data = pa.table(
        {
            "product_id": ids,
            "title": [f"product {i}" for i in range(N)],
            "category": [["Bag", "Shoe", "Coat"][i % 3] for i in range(N)],
            "image_path": [f"images/{i}.png" for i in range(N)],
            "price": [float(i) for i in range(N)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), D),
        }
    )
    return lancedb.connect(str(tmp_path)).create_table("t", data=data), vecs


def ids(rows):
    """Product ids best first, near ties (1e-4) by product id: LanceDB leaves exact ties in scan order and ranks
    scores 1e-5 apart by its own float arithmetic, so the comparison allows for that."""
    return [r["product_id"] for r in sorted(rows, key=lambda r: (-round(r["score"], 4), r["product_id"]))]


def lance_exact(tbl, q, k, where=None):
    return best_of(tbl, q, k, where, exact=True, columns=("product_id", "title", "category", "price"))


def test_exact_matches_lancedb_exact_scan(table):
    tbl, vecs = table
    exact = ExactIndex.of(tbl, ("product_id", "title", "category", "price"), max_rows=N)
    rng = np.random.default_rng(1)
    for q in rng.standard_normal((20, D)).astype(np.float32):
        mine, theirs = exact.top(q, 25), lance_exact(tbl, q, 25)
        assert ids(mine) == ids(theirs)
        assert np.allclose(sorted(r["score"] for r in mine), sorted(r["score"] for r in theirs), atol=1e-5)
        assert [r["score"] for r in mine] == sorted((r["score"] for r in mine), reverse=True)
        assert set(mine[0]) == {"product_id", "title", "category", "price", "score"}
    tied = exact.top(vecs[3], 2)  # two identical vectors: ties go by product id
    assert [r["product_id"] for r in tied] == ["p0433", "p0757"]


def test_views_rank_by_their_best_score(table):
    tbl, vecs = table
    exact = ExactIndex.of(tbl, ("product_id",), max_rows=N)
    views = np.stack([vecs[10], vecs[20] * 0.5 + vecs[30] * 0.5])
    assert ids(exact.top(views, 30)) == ids(best_of(tbl, views, 30, exact=True, columns=("product_id",)))
    assert exact.top(views, 0) == [] and len(exact.top(views, N + 5)) == N


def test_filters_and_big_tables_go_to_lancedb(table):
    tbl, vecs = table
    catalog = Catalog.of(tbl, exact_max_rows=N)
    assert catalog.exact is not None
    q = vecs[5]
    served = SimpleNamespace(table=tbl)
    rows, _ = by_vector(served, catalog, q, 10, 0, Filters(category="Bag"))
    assert rows and all(r["category"] == "Bag" for r in rows)
    unfiltered, facets = by_vector(served, catalog, q, 10, 0, Filters())
    assert unfiltered[0]["product_id"] == lance_exact(tbl, q, 1)[0]["product_id"]
    assert sum(facets["category"].values()) == 100  # counted over FACET_POOL candidates, in memory too
    assert Catalog.of(tbl, exact_max_rows=N - 1).exact is None
    assert Catalog.of(tbl, exact_max_rows=0).exact is None
    assert Catalog.of(tbl, exact_max_rows=N, max_batch=3).exact.batcher.max_batch == 3  # LENSFLOW_SERVE_MAX_BATCH


def test_concurrent_queries_scored_together_rank_as_one_at_a_time(table):
    """Text queries [D] and photo queries [R, D] batched into one matrix product each get their own ranking."""
    tbl, _ = table
    exact = ExactIndex.of(tbl, ("product_id", "title", "category", "price"), max_rows=N)
    rng = np.random.default_rng(2)
    queries = [
        (rng.standard_normal(D).astype(np.float32) if i % 2 else rng.standard_normal((3, D)).astype(np.float32), k)
        for i, k in enumerate([5, 10, 1, 25, 400, 3] * 4)
    ]
    alone = [exact.top_many([q])[0] for q in queries]
    together = exact.top_many(queries)
    assert [ids(r) for r in together] == [ids(r) for r in alone]
    assert [len(r) for r in together] == [min(k, N) for _, k in queries]
    for q, rows in zip(queries, together):  # a photo's score is its best view's
        v = np.atleast_2d(q[0])
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        assert rows[0]["score"] == pytest.approx(float((v @ exact.vectors.T).max()), abs=1e-5)
    with ThreadPoolExecutor(8) as pool:  # through the batcher, from request threads
        threaded = list(pool.map(lambda q: exact.top(*q), queries))
    assert [ids(r) for r in threaded] == [ids(r) for r in alone]
    assert exact.batcher.items >= len(queries)


@pytest.mark.parametrize("kernel", ["numpy float32", "torch float32", "torch float16"])
def test_a_16_bit_scan_ranks_exactly_as_float32_even_among_near_ties(kernel):
    """Products closer to each other than a 16-bit float can tell apart: the coarse scan keeps them all as
    candidates and the float32 re-score orders them, so the ranking and scores are float32's whatever the kernel."""
    from lensflow.serving.exact import Scan

    rng = np.random.default_rng(3)
    n, d = 3000, 64
    centre = rng.standard_normal(d)
    vecs = np.concatenate([centre + 0.004 * rng.standard_normal((600, d)), rng.standard_normal((n - 600, d))])
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    rows = pa.table({"product_id": [f"p{i:05d}" for i in range(n)]})
    order = np.arange(n)
    ref = ExactIndex(vecs, rows, order)  # float32 scan
    low = ExactIndex(vecs, rows, order, scans={"small": Scan.of(vecs, kernel), "batch": Scan.of(vecs, kernel)})
    scan = low.scans["small"]
    queries = [((centre + 0.003 * rng.standard_normal(d)).astype(np.float32), k) for k in (1, 10, 100, 700)]
    queries += [(rng.standard_normal((3, d)).astype(np.float32), 50)]
    for q, _ in queries:  # the bound holds for the coarse scores
        qq = np.atleast_2d(q) / np.linalg.norm(np.atleast_2d(q), axis=1, keepdims=True)
        assert np.abs(scan.scores(qq) - qq @ vecs.T).max() <= scan.delta
    expected = ref.top_many(queries)
    got = low.top_many(queries)
    assert [[r["product_id"] for r in g] for g in got] == [[r["product_id"] for r in e] for e in expected]
    assert all(np.allclose([r["score"] for r in g], [r["score"] for r in e], atol=1e-6) for g, e in zip(got, expected))
    if kernel == "torch float16":  # the 16-bit scores alone would not have given this order
        coarse = scan.scores(queries[2][0][None] / np.linalg.norm(queries[2][0]))[0]
        alone = [f"p{i:05d}" for i in np.lexsort((order, -coarse))[:100]]
        assert alone != [r["product_id"] for r in expected[2]]


def test_the_scan_kernel_is_measured_on_this_machine():
    from lensflow.serving.exact import KERNELS, Scan

    vecs = np.random.default_rng(4).standard_normal((5000, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    scan = Scan.fastest(vecs, 8)
    assert scan.kernel in KERNELS and scan.matrix.shape == vecs.shape
