"""Contrastive losses for image/text alignment."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def multi_positive_contrastive(
    image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE where every pair sharing a label is a positive.

    Catalog captions repeat (many products share a category text), so plain InfoNCE would
    push apart identical captions; here the target is uniform over all same-label pairs.
    """
    logits = logit_scale.exp() * image_emb @ text_emb.t()
    positives = (labels[:, None] == labels[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def instance_contrastive(view_emb: torch.Tensor, clean_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: each augmented view must find its own product's clean image in the batch."""
    logits = view_emb @ clean_emb.t() / temperature
    target = torch.arange(len(view_emb), device=view_emb.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
