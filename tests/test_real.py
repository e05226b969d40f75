"""One run on a small real Fashion-MNIST subset with the real pretrained towers."""

import numpy as np
import pytest
import torch

from tests.conftest import needs_fashion_mnist

pytestmark = [pytest.mark.real, needs_fashion_mnist]


def test_batchnorm_folding_keeps_the_features():
    from lensflow.models.towers.efficientnet import EfficientNetLiteTower

    x = torch.randn(4, 3, 96, 96)
    plain, folded = EfficientNetLiteTower(fold_bn=False).eval(), EfficientNetLiteTower(fold_bn=True).eval()
    with torch.inference_mode():
        a, b = plain(x), folded(x)
    assert a.shape == (4, 1280)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.9999


def test_bf16_precision_keeps_the_features_and_is_part_of_the_identity():
    from lensflow.models.towers import build_tower
    from lensflow.models.towers.efficientnet import EfficientNetLiteTower
    from lensflow.models.towers.precision import bf16_native_cpu

    x = torch.randn(8, 3, 96, 96)
    fp32, bf16 = EfficientNetLiteTower().eval(), EfficientNetLiteTower(precision="bf16").eval()
    with torch.inference_mode():
        a, b = fp32(x), bf16(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert cos.min() > 0.98 and (cos.min() < 1.0 or not bf16_native_cpu())  # bf16 really ran where the CPU has it
    assert fp32.fingerprint() != bf16.fingerprint()
    assert build_tower(bf16.spec()).precision == "bf16"
    prefix, _ = bf16._split_blocks(2)
    with torch.inference_mode():
        assert prefix(x).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        EfficientNetLiteTower(precision="fp8")


def test_real_minilm_on_onnx_runtime_gives_the_torch_features():
    """The bundled MiniLM text tower, as the search service runs it (models/onnx_text.py)."""
    from lensflow.models.onnx_text import OnnxMeanPoolText, onnx_text_tower
    from lensflow.models.towers.hf_text import HFMeanPoolTextTower

    tower = HFMeanPoolTextTower("minilm").eval()
    fast = onnx_text_tower(tower)
    assert isinstance(fast, OnnxMeanPoolText)
    texts = ["ankle boots", "a long red summer dress with thin straps", "sac à main en cuir", "t-shirt"]
    with torch.inference_mode():
        ref = tower(texts)
        assert torch.allclose(fast(texts), ref, atol=1e-4)
        assert torch.allclose(fast(texts[1:2])[0], ref[1], atol=1e-4)


def test_real_towers_on_real_products(project, prefect_harness):
    from lensflow.core.champion import status
    from lensflow.flows.retrain import RetrainParams, retrain
    from lensflow.serving.search import search
    from lensflow.serving.served import load_champion
    from lensflow.tasks.sample import build_sample_catalog

    catalog = build_sample_catalog(project.data_path, limit=1400)
    out = retrain(
        params=RetrainParams(epochs=8, approval="auto-approve", progress=False, heldout_photos=10, heldout_combined=30)
    )
    m = out["metrics"]
    # chance is 0.10 (ten balanced categories); frozen towers + heads on 1,100 products do far better
    assert m["image_precision_at_10"] > 0.7 and m["text_precision_at_10"] > 0.6 and m["zero_shot_accuracy"] > 0.5
    st = status(project)
    assert st["consistent"] and st["champion"]["index"]["rows"] == 1400
    served = load_champion(project)
    test = catalog[catalog["split"] == "test"].head(20)
    same = [
        np.mean([h["category"] == row.category for h in search(served, image=project.data_path / row.image_path, k=10)])
        for row in test.itertuples()
    ]
    assert np.mean(same) > 0.7
    boots = search(served, text="ankle boots", k=10)
    assert sum(h["category"] == "Ankle boot" for h in boots) >= 7
