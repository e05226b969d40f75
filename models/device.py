"""The torch device a setting names: `auto` picks a GPU when there is one, else the CPU."""

from __future__ import annotations


def resolve_device(device: str = "auto", index: int | None = None) -> str:
    """`device` unless it is "auto"; then "cuda" (or, given a worker `index`, GPU index modulo the GPUs
    visible, so workers spread over them) when CUDA is available, else "cpu"."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return "cuda" if index is None else f"cuda:{index % torch.cuda.device_count()}"
