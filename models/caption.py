"""Captions from a local image-to-text checkpoint, for users who have one: a transformers
VisionEncoderDecoderModel (e.g. ViT + GPT-2) or BLIP, loaded from a folder (never downloaded). The search
service's describer uses it for the description when LENSFLOW_CAPTION_MODEL names such a folder."""

from __future__ import annotations

from pathlib import Path

import torch


class Captioner:
    """One image-to-text model with its image processor and tokenizer (or BLIP's processor)."""

    def __init__(self, model, processor, tokenizer, max_new_tokens: int = 24):
        self.model, self.processor, self.tokenizer = model.eval(), processor, tokenizer
        self.max_new_tokens = max_new_tokens

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", max_new_tokens: int = 24) -> Captioner:
        """The checkpoint in `folder` (config.json, weights, processor and tokenizer files)."""
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} holds no config.json: not a transformers checkpoint folder")
        kind = AutoConfig.from_pretrained(folder, local_files_only=True).model_type
        if kind == "vision-encoder-decoder":
            from transformers import VisionEncoderDecoderModel

            model = VisionEncoderDecoderModel.from_pretrained(folder, local_files_only=True)
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        elif kind == "blip":
            from transformers import BlipForConditionalGeneration, BlipProcessor

            model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True)
            processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
            tokenizer = processor.tokenizer
        else:
            raise ValueError(f"{folder}: a {kind!r} model; captioning takes vision-encoder-decoder or blip checkpoints")
        return cls(model.to(device), processor, tokenizer, max_new_tokens)

    @torch.inference_mode()
    def caption(self, image) -> str:
        """A caption of one RGB PIL image (greedy decoding, deterministic)."""
        inputs = self.processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.model.device)
        out = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()
