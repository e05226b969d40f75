import pytest
import torch

from lensflow.models.encoder import build_encoder


@pytest.mark.parametrize("blocks", [0, 1, 2, None])
def test_split_is_the_same_function(blocks):
    tower = build_encoder("tiny").image_tower
    x = torch.randn(2, 3, 32, 32)
    split = tower.split(blocks)
    with torch.no_grad():
        assert torch.allclose(split.suffix(split.prefix(x)), tower(x), atol=1e-6)


def test_split_fingerprints_differ_by_cut_and_ignore_suffix_training():
    tower = build_encoder("tiny").image_tower
    prints = {b: tower.split(b).fingerprint for b in (0, 1, 2, None)}
    assert len(set(prints.values())) == 4
    with torch.no_grad():
        tower.net[2].weight.add_(1.0)  # train the last block
    assert tower.split(1).fingerprint == prints[1]  # its frozen prefix is unchanged: cache stays valid
    assert tower.split(0).fingerprint != prints[0]  # the whole tower changed
    with pytest.raises(ValueError, match="cannot unfreeze 3"):
        tower.split(3)


def test_fingerprint_follows_weights_and_preprocessing():
    a, b = build_encoder("tiny").image_tower, build_encoder("tiny").image_tower
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        b.net[0].bias.add_(0.01)
    assert a.fingerprint() != b.fingerprint()
    preset = {
        "image_tower": {"type": "tiny-conv", "size": 48, "width": 16, "seed": 0},
        "text_tower": {"type": "hash-text", "dim": 32},
        "embed_dim": 16,
    }
    assert build_encoder(preset).image_tower.fingerprint() != a.fingerprint()
