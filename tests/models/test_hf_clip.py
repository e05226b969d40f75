"""The transformers CLIP/SigLIP backend, on tiny random checkpoints written by the test."""

import json

import pytest
import torch

from lensflow.models.encoder import build_encoder, load_encoder


def _tokenizer_files(folder):
    # A tiny byte-level BPE vocabulary: CLIPTokenizer(vocab_file=...) is silently ignored in
    # transformers 5, so the tokenizer is built from an in-memory vocab and saved.
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.save_pretrained(str(folder))
    return len(vocab), tok


@pytest.fixture
def tiny_clip(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path / "clip"
    n_vocab, tok = _tokenizer_files(folder)
    config = CLIPConfig(
        text_config={
            "vocab_size": n_vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "eos_token_id": 1,
            "bos_token_id": 0,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"crop_size": 32, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    )
    assert len(tok("abc")["input_ids"]) > 2  # the vocabulary really was loaded
    return folder


def test_clip_backend_encodes_and_round_trips(tiny_clip, tmp_path):
    preset = {
        "name": "clip-test",
        "embed_dim": 8,
        "head_hidden": 0,
        "image_tower": {"type": "hf-clip-vision", "source": str(tiny_clip)},
        "text_tower": {"type": "hf-clip-text", "source": str(tiny_clip)},
    }
    enc = build_encoder(preset)
    assert enc.image_tower.out_dim == 24 and enc.text_tower.out_dim == 24
    assert enc.preprocess.size == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        img, txt = enc.encode_images(x), enc.encode_texts(["red shirt", "blue shoe"])
    assert img.shape == (2, 8) and txt.shape == (2, 8)
    assert not torch.allclose(txt[0], txt[1])
    enc.save(tmp_path / "saved")
    again = load_encoder(tmp_path / "saved")
    with torch.inference_mode():
        assert torch.allclose(again.encode_images(x), img, atol=1e-6)
        assert torch.allclose(again.encode_texts(["red shirt", "blue shoe"]), txt, atol=1e-6)


def test_siglip_backend(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    folder = tmp_path / "siglip"
    n_vocab, _ = _tokenizer_files(folder)
    config = SiglipConfig(
        text_config={
            "vocab_size": n_vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "projection_size": 32,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
    )
    SiglipModel(config).save_pretrained(str(folder))
    enc = build_encoder(
        {
            "name": "s",
            "embed_dim": 8,
            "image_tower": {"type": "hf-clip-vision", "source": str(folder)},
            "text_tower": {"type": "hf-clip-text", "source": str(folder)},
        }
    )
    assert enc.image_tower.family == "siglip" and enc.text_tower.family == "siglip"
    with torch.inference_mode():
        assert enc.encode_images(torch.randn(1, 3, 32, 32)).shape == (1, 8)
        assert enc.encode_texts(["abc"]).shape == (1, 8)
