import numpy as np
import pytest

from lensflow.tasks.helpers.metrics import grouped_metrics, label_relevance, ranking_metrics, recall_curve, topk


def test_ranking_metrics_by_hand():
    rel = np.zeros((2, 10), dtype=bool)
    rel[0, [1, 3]] = True  # first hit at rank 2, 2 relevant items exist
    rel[1, 0] = True  # first hit at rank 1, 1 relevant item exists
    m = ranking_metrics(rel, np.array([2, 1]), "q")
    assert m["q_precision_at_1"] == 0.5
    assert m["q_precision_at_5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert m["q_precision_at_10"] == pytest.approx(3 / 20)
    assert m["q_recall_at_1"] == 0.5 and m["q_recall_at_5"] == 1.0 and m["q_recall_at_10"] == 1.0
    assert m["q_mrr_at_10"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg0 = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert m["q_ndcg_at_10"] == pytest.approx((ndcg0 + 1.0) / 2)


def test_query_without_relevant_items_counts_as_zero():
    rel = np.zeros((2, 10), dtype=bool)
    rel[0, 0] = True
    m = ranking_metrics(rel, np.array([1, 0]), "x")  # second query: nothing relevant exists
    assert m["x_mrr_at_10"] == 0.5 and m["x_ndcg_at_10"] == 0.5 and m["x_recall_at_10"] == 0.5


def test_no_hit_in_top10_gives_zero():
    m = ranking_metrics(np.zeros((1, 10), dtype=bool), np.array([5]), "x")
    assert m["x_mrr_at_10"] == 0.0 and m["x_ndcg_at_10"] == 0.0 and m["x_precision_at_10"] == 0.0


def test_no_queries_is_an_error():
    with pytest.raises(ValueError, match="no image queries"):
        ranking_metrics(np.zeros((0, 10), dtype=bool), np.array([]), "image")


def test_topk_matches_brute_force():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    assert np.array_equal(topk(q, g, 5, chunk=7), np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :5])


def test_topk_breaks_ties_by_gallery_order_even_past_the_candidates():
    gallery = np.ones((40, 2), dtype=np.float32)  # 40 identical items: all tied
    gallery[30] = [2.0, 2.0]  # one clear winner late in the gallery
    ranked = topk(np.ones((1, 2), np.float32), gallery, 5)
    assert ranked.tolist() == [[30, 0, 1, 2, 3]]


def test_tie_with_a_relevant_item_ranks_it_by_position():
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    labels = np.array(["b", "a", "a"])
    ranked = topk(np.array([[1.0, 0.0]], np.float32), gallery, 3)
    rel, n = label_relevance(ranked, np.array(["a"]), labels)
    assert rel.tolist() == [[False, True, True]] and n.tolist() == [2]
    assert ranking_metrics(rel, n, "t")["t_mrr_at_10"] == 0.5


def test_recall_curve_is_monotone_and_matches_metrics():
    rel = np.zeros((4, 10), dtype=bool)
    rel[0, 0] = rel[1, 2] = rel[2, 9] = True
    curve = recall_curve(rel)
    assert curve[0] == 0.25 and curve[2] == 0.5 and curve[9] == 0.75
    assert all(a <= b for a, b in zip(curve, curve[1:]))


def test_grouped_metrics_split_by_query_category():
    rel = np.array([[True] * 10, [False] * 10])
    per = grouped_metrics(rel, np.array([10, 10]), np.array(["shirt", "shoe"]), "image")
    assert per["shirt"]["image_precision_at_10"] == 1.0 and per["shoe"]["image_precision_at_10"] == 0.0
