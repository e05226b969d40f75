import json

import pytest
import torch

from lensflow.models.encoder import build_encoder, load_encoder, load_preset


def test_tiny_encoder_outputs_normalised_float32():
    enc = build_encoder("tiny")
    with torch.inference_mode():
        img = enc.encode_images(torch.randn(3, 3, 32, 32))
        txt = enc.encode_texts(["red shirt", "blue shoe"])
    assert img.shape == (3, 24) and txt.shape == (2, 24)  # 16-d category + 8-d instance space
    assert torch.count_nonzero(txt[:, 16:]) == 0  # texts live in the category space only
    assert img.dtype == torch.float32
    assert torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt.norm(dim=1), torch.ones(2), atol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path):
    enc = build_encoder("tiny", seed=3)
    with torch.no_grad():
        enc.image_head.net[1].weight.add_(0.5)  # make heads differ from a fresh init
    enc.save(tmp_path / "m")
    again = load_encoder(tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(enc.encode_images(x), again.encode_images(x))
        assert torch.equal(enc.encode_texts(["a b c"]), again.encode_texts(["a b c"]))
    meta = json.loads((tmp_path / "m" / "lensflow.json").read_text())
    assert meta["image_tower"]["type"] == "tiny-conv" and meta["format"] == 1


def test_load_rejects_foreign_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a lensflow encoder directory"):
        load_encoder(tmp_path)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="known presets: .*tiny"):
        load_preset("no-such-preset")


def test_image_vectors_weight_category_and_instance_similarity():
    enc = build_encoder("tiny")
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        feats = enc.image_tower(x)
        cat, inst = enc.image_parts(feats)
        v = enc.encode_images(x)
        t = enc.encode_texts(["red shirt"])
    w = enc.category_weight
    assert torch.allclose(v @ v.T, w * cat @ cat.T + (1 - w) * inst @ inst.T, atol=1e-5)
    # text search ranks images by the category space alone
    assert torch.equal(torch.argsort(t @ v.T, descending=True), torch.argsort(t[:, :16] @ cat.T, descending=True))
    with pytest.raises(ValueError, match="category_weight"):
        build_encoder(load_preset("tiny") | {"category_weight": 0.0})
