"""Training loop for the projection heads on precomputed (frozen) tower features."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from models.encoder import DualEncoder
from models.loss import multi_positive_contrastive


@dataclass
class HeadsTrainConfig:
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def train_heads(
    encoder: DualEncoder,
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_index: torch.Tensor,
    labels: torch.Tensor,
    cfg: HeadsTrainConfig,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Fit image/text heads so that each image lands near the texts that share its label.

    image_features [N, Fi]; text_features [T, Ft] for the T distinct texts; text_index [N] maps
    each image to its own text, or [N, A] to A alternative texts (one drawn per item and batch);
    labels [N] define positives (same label = positive pair).
    Returns one dict per epoch (loss, seconds).
    """
    if len(image_features) < 2:
        raise ValueError(f"need at least 2 training items, got {len(image_features)}")
    torch.manual_seed(cfg.seed)
    device = encoder.device
    params = [*encoder.image_head.parameters(), *encoder.text_head.parameters(), encoder.logit_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, -(-len(image_features) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    image_features, text_features = image_features.to(device), text_features.to(device)
    text_index, labels = text_index.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    encoder.image_head.train()
    encoder.text_head.train()
    bar = tqdm(range(cfg.epochs), desc="train heads", unit="epoch", disable=not progress)
    for epoch in bar:
        t0, total, batches = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(image_features), generator=gen).to(device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:
                continue
            img = encoder.image_head(image_features[idx])
            choice = text_index[idx]
            if choice.dim() == 2:
                pick = torch.randint(choice.shape[1], (len(idx),), generator=gen).to(device)
                choice = choice.gather(1, pick[:, None]).squeeze(1)
            txt = encoder.text_head(text_features[choice])
            loss = multi_positive_contrastive(img, txt, labels[idx], encoder.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                encoder.logit_scale.clamp_(0, 4.6052)  # temperature >= 0.01, as in CLIP
            total, batches = total + loss.item(), batches + 1
        record = {"epoch": epoch, "loss": total / max(batches, 1), "seconds": time.perf_counter() - t0}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if on_epoch:
            on_epoch(epoch, record)
    encoder.eval()
    return history
