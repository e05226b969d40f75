import numpy as np

from lensflow.tasks.enrich import neighbours
from lensflow.tasks.mislabel import likely_mislabelled


def test_flipped_labels_are_found_and_nothing_else():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    vectors = np.concatenate([c + rng.normal(size=(40, 16)) for c in centres]).astype(np.float32)
    categories = np.repeat(np.array(["Bag", "Coat", "Shoe"]), 40)
    ids = np.array([f"p{i}" for i in range(120)])
    noisy = categories.copy()
    noisy[[3, 50, 95]] = ["Coat", "Shoe", "Bag"]  # three rows mislabelled
    flagged = likely_mislabelled(ids, noisy, vectors)
    assert set(flagged.product_id) == {"p3", "p50", "p95"}
    assert flagged.set_index("product_id").loc["p3", "predicted"] == "Bag" and (flagged.confidence >= 0.9).all()
    assert likely_mislabelled(ids, categories, vectors).empty


def test_neighbours_are_exact_and_exclude_the_row_itself():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(300, 8)).astype(np.float32)
    idx, sim = neighbours(v, v, k=5, exclude=np.arange(len(v)), chunk=64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    assert (idx == np.argsort(-full, axis=1)[:, :5]).all() and np.allclose(sim, np.sort(full, axis=1)[:, ::-1][:, :5])
