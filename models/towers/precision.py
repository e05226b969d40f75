"""Reduced precision for frozen image towers: bf16 where the device runs it natively, fp32 elsewhere."""

from __future__ import annotations

import torch

PRECISIONS = {"fp32", "bf16"}


def computes_in(device: torch.device, precision: str) -> str:
    """What `precision` means on this device: bf16 on CUDA, and on CPU only where it has native bf16
    (elsewhere emulation is slower than fp32, so it stays fp32)."""
    return "bf16" if precision == "bf16" and (device.type == "cuda" or bf16_native_cpu()) else "fp32"


def reduced_precision(device: torch.device, precision: str):
    """bf16 autocast for frozen convolutions where `computes_in` says so; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=computes_in(device, precision) == "bf16")


def bf16_native_cpu() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX); False where torch cannot tell."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False
