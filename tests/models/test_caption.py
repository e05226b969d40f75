"""The captioning backend on tiny random VisionEncoderDecoder and BLIP checkpoints the tests write (nothing
downloaded)."""

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


@pytest.fixture(scope="module")
def blip_checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    folder = tmp_path_factory.mktemp("blip")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    tokenizer = BertTokenizerFast(tokenizer_object=tok, mask_token="[MASK]", bos_token="[DEC]", **special)
    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
    text = BlipTextConfig(
        vocab_size=len(vocab),
        encoder_hidden_size=32,
        bos_token_id=5,  # BLIP's decoder starts from [DEC] and stops at [SEP]
        sep_token_id=3,
        eos_token_id=3,
        pad_token_id=0,
        max_position_embeddings=64,
        **tiny,
    )
    vision = BlipVisionConfig(image_size=32, patch_size=8, **tiny)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    )
    model.save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["checkpoint", "blip_checkpoint"])
def test_a_local_checkpoint_captions_deterministically(kind, request):
    from lensflow.models.caption import Captioner

    cap = Captioner.load(request.getfixturevalue(kind), max_new_tokens=6)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    text = cap.caption(image)
    assert isinstance(text, str) and set(text.split()) <= set(WORDS) and text == cap.caption(image)


def test_not_a_checkpoint_is_named(tmp_path):
    from lensflow.models.caption import Captioner

    with pytest.raises(FileNotFoundError, match="no config.json"):
        Captioner.load(tmp_path)
