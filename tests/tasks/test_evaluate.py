import numpy as np
import pytest

from tasks.evaluate import query_metrics, ranking_metrics, topk


def test_ranking_metrics_by_definition():
    rel = np.zeros((2, 10), dtype=bool)
    rel[0, [1, 3]] = True      # first hit at rank 2
    rel[1, 0] = True           # first hit at rank 1
    m = ranking_metrics(rel, np.array([2, 1]), "q")
    assert m["q_precision_at_1"] == 0.5
    assert m["q_precision_at_10"] == pytest.approx(3 / 20)
    assert m["q_recall_at_1"] == 0.5 and m["q_recall_at_5"] == 1.0
    assert m["q_mrr_at_10"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg0 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert m["q_ndcg_at_10"] == pytest.approx((ndcg0 + 1.0) / 2)


def test_no_hit_gives_zero_reciprocal_rank():
    m = ranking_metrics(np.zeros((1, 10), dtype=bool), np.array([5]), "x")
    assert m["x_mrr_at_10"] == 0.0 and m["x_ndcg_at_10"] == 0.0


def test_topk_matches_brute_force():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    assert np.array_equal(topk(q, g, 5, chunk=7), np.argsort(-(q @ g.T), axis=1)[:, :5])


def test_separable_embeddings_score_perfectly_per_category():
    labels = np.array(["a", "b", "c"] * 20)
    centres = np.eye(3, 4)
    gallery = centres[np.searchsorted(["a", "b", "c"], labels)] + 0.01 * np.random.default_rng(0).normal(size=(60, 4))
    overall, per_cat = query_metrics(centres[:3], np.array(["a", "b", "c"]), gallery, labels, "text")
    assert overall["text_precision_at_10"] == 1.0 and overall["text_ndcg_at_10"] == pytest.approx(1.0)
    assert set(per_cat) == {"a", "b", "c"} and per_cat["b"]["text_mrr_at_10"] == 1.0
