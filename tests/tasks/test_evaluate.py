import numpy as np
import pytest

from lensflow.models.encoder import build_encoder
from lensflow.tasks.evaluate import Gallery, ShopperQueries, category_queries, eval_set_md5, evaluate_vectors


def toy_gallery(enc, per_category=8):
    """Products of three categories placed around their category's text query (so every search works)."""
    cats = ["bag", "shirt", "shoe"]
    centres = category_queries(enc, cats)
    rng = np.random.default_rng(0)
    ids, labels, split, vecs = [], [], [], []
    for ci, c in enumerate(cats):
        for i in range(per_category):
            v = centres[ci] + 0.05 * rng.normal(size=centres.shape[1])
            (
                ids.append(f"{c}{i}"),
                labels.append(c),
                split.append("test" if i < 2 else "train"),
                vecs.append(v / np.linalg.norm(v)),
            )
    return Gallery(np.array(ids), np.array(labels), np.array(split), np.array(vecs, dtype=np.float32))


def test_category_and_instance_metrics_by_hand():
    enc = build_encoder("tiny")
    g = toy_gallery(enc)
    row = {pid: i for i, pid in enumerate(g.ids)}
    hits = ["bag0", "bag1", "shirt0", "shoe1"]  # shopper photos that look exactly like their product
    misses = {"shirt1": "bag5", "shoe0": "bag6"}  # photos that look like another product entirely
    qids = hits + list(misses)
    vecs = np.array([g.vectors[row[p]] for p in hits] + [g.vectors[row[o]] for o in misses.values()])
    shopper = ShopperQueries(qids, vecs, {"kind": "test"}, 5)
    r = evaluate_vectors(enc, g, shopper)
    m = r.metrics
    assert m["text_precision_at_1"] == 1.0 and m["image_precision_at_1"] == 1.0 and m["zero_shot_accuracy"] == 1.0
    assert m["shopper_recall_at_1"] == pytest.approx(4 / 6) and m["shopper_precision_at_1"] == pytest.approx(4 / 6)
    assert m["shopper_mrr_at_10"] >= 4 / 6
    assert {w["product_id"] for w in r.worst[:2]} == set(misses)  # worst queries first
    assert r.worst[0]["results"][0] in misses.values()
    assert r.per_category["bag"]["shopper_recall_at_1"] == 1.0 and r.per_category["shoe"]["shopper_recall_at_1"] == 0.5
    assert r.queries == {"image": 6, "text": 3, "gallery": 18, "shopper": 6}
    assert len(r.curves["shopper"]) == 10 and r.curves["shopper"][0] == pytest.approx(4 / 6)


def test_eval_set_md5_ignores_row_order_but_not_the_recipe():
    enc = build_encoder("tiny")
    g = toy_gallery(enc)
    flipped = Gallery(g.ids[::-1], g.categories[::-1], g.split[::-1], g.vectors[::-1])
    shopper = ShopperQueries(["bag0"], g.vectors[:1], {"kind": "a"}, 1)
    assert eval_set_md5(g, shopper) == eval_set_md5(flipped, shopper)
    assert eval_set_md5(g, shopper) != eval_set_md5(g, ShopperQueries(["bag0"], g.vectors[:1], {"kind": "a"}, 2))
    assert eval_set_md5(g, shopper) != eval_set_md5(g, None)


def test_shopper_query_of_unknown_product_is_an_error():
    enc = build_encoder("tiny")
    g = toy_gallery(enc)
    with pytest.raises(ValueError, match="not in the gallery"):
        evaluate_vectors(enc, g, ShopperQueries(["nope"], g.vectors[:1], {}, 0))


def test_gallery_without_test_rows_is_an_error():
    enc = build_encoder("tiny")
    g = toy_gallery(enc)
    g.split[:] = "train"
    with pytest.raises(ValueError, match="needs test and non-test rows"):
        evaluate_vectors(enc, g)


def test_without_an_encoder_only_image_and_shopper_metrics():
    enc = build_encoder("tiny")
    g = toy_gallery(enc)
    r = evaluate_vectors(None, g, ShopperQueries(["bag0"], g.vectors[:1], {}, 0))
    assert "image_precision_at_10" in r.metrics and r.metrics["shopper_recall_at_1"] == 1.0
    assert not any(k.startswith("text_") or k == "zero_shot_accuracy" for k in r.metrics) and r.queries["text"] == 0


def test_precision_bounds_show_what_a_small_catalog_allows():
    from lensflow.tasks.evaluate import precision_bounds
    from lensflow.tasks.helpers.metrics import label_relevance

    gallery = np.array(["a"] * 20 + ["b"] * 4 + ["c"] * 1)
    _, n_rel = label_relevance(np.zeros((4, 10), int), np.array(["a", "b", "c", "d"]), gallery)
    b = precision_bounds(n_rel, len(gallery))
    # perfect ranking: a fills 10 of 10, b 4 of 10, c 1 of 10, d (no gallery products) 0
    assert b["ceiling"] == round((1 + 0.4 + 0.1 + 0) / 4, 4)
    assert b["chance"] == round((20 + 4 + 1 + 0) / 25 / 4, 4)
