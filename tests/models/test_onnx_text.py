"""The text tower on ONNX Runtime gives torch's features, on a tiny random BERT written by the test; towers it
cannot serve stay on torch."""

import pytest
import torch

from lensflow.models.onnx_text import OnnxMeanPoolText, onnx_text_tower
from lensflow.models.towers.hf_text import HFMeanPoolTextTower

WORDS = ["red", "blue", "dress", "shoe", "bag", "black", "leather", "boot", "a", "of", "pair", "with", "low", "heel"]


@pytest.fixture
def tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path / "bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})  # vocab_file= is ignored in transformers 5
    assert tok("red dress")["input_ids"] == [2, 5, 7, 3]  # the vocabulary really was loaded
    tok.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return HFMeanPoolTextTower(str(folder), max_length=16, _folder=folder).eval()


def test_onnx_tower_gives_torch_features_alone_and_padded(tiny_bert):
    fast = onnx_text_tower(tiny_bert)
    assert isinstance(fast, OnnxMeanPoolText) and fast.out_dim == tiny_bert.out_dim
    texts = [
        "red dress",
        "a pair of black leather boot with a low heel",
        "bag",
        "zzz unknown words",
        " ".join(WORDS * 3),
    ]
    with torch.inference_mode():
        ref = tiny_bert(texts)
        assert torch.allclose(fast(texts), ref, atol=1e-5)  # padded in one batch; the last one truncated
        for i, t in enumerate(texts):
            assert torch.allclose(fast([t])[0], ref[i], atol=1e-5)


def test_towers_it_cannot_serve_stay_on_torch(tiny_bert, monkeypatch, caplog):
    from lensflow.models.towers.tiny import HashTextTower

    assert onnx_text_tower(HashTextTower(16)) is None  # not a mean-pooled transformers tower
    import lensflow.models.onnx_text as O

    real = O.OnnxMeanPoolText.forward
    monkeypatch.setattr(O.OnnxMeanPoolText, "forward", lambda self, texts: real(self, texts) + 1e-3)
    assert onnx_text_tower(tiny_bert) is None
    assert "differs by" in caplog.text
    monkeypatch.setattr(O.torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no trace")))
    assert onnx_text_tower(tiny_bert) is None
    assert "ONNX export failed (RuntimeError: no trace)" in caplog.text
