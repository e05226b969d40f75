"""The mean-pooled text tower (models/towers/hf_text.py) on ONNX Runtime, for query encoding in the search service.

One short query through MiniLM-L6 takes ~7 ms in torch eager on 2 cores and ~1.5 ms in ONNX Runtime, with the same
vectors to ~1e-6 (BENCHMARKS.md, "Search service"). The graph is exported in memory from the loaded tower (no
file written, nothing downloaded), with eager attention (the SDPA path traces shape-specific masks), and checked
against torch on probe texts before it is used: `onnx_text_tower` returns None, and the caller keeps torch, when
the tower is not of this kind or the check fails."""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np
import torch
from torch import nn

log = logging.getLogger("lensflow.models")
PROBES = ["red dress", "a pair of black leather ankle boots with a low heel", "bag", "übergrößen jacke 👗"]


class _Hidden(nn.Module):
    """The transformer's last hidden state from named inputs (what gets exported)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).last_hidden_state


class OnnxMeanPoolText(nn.Module):
    """Drop-in for HFMeanPoolTextTower at inference: texts -> [N, hidden] mean-pooled float32 features."""

    def __init__(self, tower: nn.Module, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        self.tokenizer, self.max_length, self.out_dim = tower.tokenizer, tower.max_length, tower.out_dim
        sample = self.tokenizer(PROBES[:2], padding=True, return_tensors="pt")
        self.names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        model = copy.deepcopy(tower.model).eval()
        model.config._attn_implementation = "eager"
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():  # tracer notes on shapes: the probe check is the judge
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(model, self.names),
                tuple(sample[n] for n in self.names),
                buf,
                input_names=self.names,
                output_names=["hidden"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*self.names, "hidden"]},
                opset_version=17,
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # busy-waits steal the cores
        self.session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        hidden = self.session.run(None, {n: tokens[n].astype(np.int64) for n in self.names})[0]
        mask = tokens["attention_mask"][..., None].astype(hidden.dtype)
        return torch.from_numpy((hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9))


def onnx_text_tower(tower: nn.Module, tolerance: float = 1e-4) -> OnnxMeanPoolText | None:
    """`tower` on ONNX Runtime when it is a mean-pooled transformers tower whose exported graph gives its
    features to `tolerance` on the probe texts (alone and padded in one batch); None otherwise (the reason logged)."""
    if getattr(tower, "kind", None) != "hf-mean-pool":
        return None
    try:
        fast = OnnxMeanPoolText(tower)
        with torch.inference_mode():
            diff = max(
                float((fast(batch) - tower(batch).float()).abs().max()) for batch in [PROBES, *([p] for p in PROBES)]
            )
    except Exception as exc:  # an architecture the exporter cannot trace: torch it is
        log.warning("text tower stays on torch: ONNX export failed (%s: %s)", type(exc).__name__, exc)
        return None
    if diff > tolerance:
        log.warning("text tower stays on torch: ONNX Runtime differs by %.2e (> %.0e)", diff, tolerance)
        return None
    return fast
