"""One run on a small real Fashion-MNIST subset with the real pretrained towers."""


import numpy as np
import pytest
import torch

from tests.conftest import needs_fashion_mnist

pytestmark = [pytest.mark.real, needs_fashion_mnist]


def test_batchnorm_folding_keeps_the_features():
    from models.towers import EfficientNetLiteTower

    x = torch.randn(4, 3, 96, 96)
    plain, folded = EfficientNetLiteTower(fold_bn=False).eval(), EfficientNetLiteTower(fold_bn=True).eval()
    with torch.inference_mode():
        a, b = plain(x), folded(x)
    assert a.shape == (4, 1280)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.9999


def test_real_towers_on_real_products(project, prefect_harness):
    from flows.retrain import RetrainParams, retrain
    from tasks.champion import load_champion, search, status
    from tasks.sample import build_sample_catalog

    catalog = build_sample_catalog(project.data_path, limit=1400)
    out = retrain(params=RetrainParams(epochs=8, approval="auto-approve", progress=False))
    m = out["metrics"]
    # chance is 0.10 (ten balanced categories); frozen towers + heads on 1,100 products do far better
    assert m["image_precision_at_10"] > 0.7 and m["text_precision_at_10"] > 0.6 and m["zero_shot_accuracy"] > 0.5
    st = status(project)
    assert st["consistent"] and st["champion"]["index"]["rows"] == 1400
    served = load_champion(project)
    test = catalog[catalog["split"] == "test"].head(20)
    same = [np.mean([h["category"] == row.category for h in search(served, image=project.data_path / row.image_path, k=10)])
            for row in test.itertuples()]
    assert np.mean(same) > 0.7
    boots = search(served, text="ankle boots", k=10)
    assert sum(h["category"] == "Ankle boot" for h in boots) >= 7
