"""The captioning backend on a tiny random VisionEncoderDecoder checkpoint the test writes (nothing downloaded)."""

import numpy as np
import pytest
from PIL import Image

WORDS = ["a", "red", "blue", "shirt", "shoe", "bag", "with", "stripes"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    folder = tmp_path_factory.mktemp("captioner")
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    enc = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    dec = GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_local_checkpoint_captions_deterministically(checkpoint):
    from models.caption import Captioner

    cap = Captioner.load(checkpoint, max_new_tokens=6)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    text = cap.caption(image)
    assert isinstance(text, str) and set(text.split()) <= set(WORDS) and text == cap.caption(image)


def test_not_a_checkpoint_is_named(tmp_path):
    from models.caption import Captioner

    with pytest.raises(FileNotFoundError, match="no config.json"):
        Captioner.load(tmp_path)
