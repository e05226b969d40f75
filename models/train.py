"""Contrastive fine-tuning of the dual encoder on cached tower inputs.

One loop serves the three strategies: the frozen part of the image tower has already run (its
outputs are cached by the harness), so each step only runs the trainable suffix (nothing for
`heads`, the last blocks for `partial`, the whole tower for `full`) and the heads.

Objective: a multi-positive image/text contrastive loss (catalog captions repeat across products)
on clean and shopper-augmented views, plus an instance loss that pulls each augmented view to its
own product's clean image against the other products in the batch. The first serves category
search by text and photo; the second keeps the instance detail that same-product photo search
needs and class-level training would otherwise erase.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from lensflow.models.encoder import DualEncoder, read_preset
from lensflow.models.loss import instance_contrastive, multi_positive_contrastive

STRATEGIES = ("heads", "partial", "full")
STRATEGIES_DIR = Path(__file__).parent / "configs" / "strategies"


@dataclass
class TrainConfig:
    strategy: str = "heads"  # heads | partial | full
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-3  # heads
    tower_lr: float = 1e-4  # unfrozen tower layers
    weight_decay: float = 1e-4
    warmup: float = 0.1  # share of steps with linear warm-up, then cosine decay
    seed: int = 0
    unfreeze_blocks: int = 2  # partial: last N image-tower blocks
    unfreeze_text_layers: int = 1  # partial: last N text-tower layers
    aug_views: int = 1  # shopper-augmented views per training product (0: none)
    instance_weight: float = 1.0  # weight of the instance loss (0: category loss only)
    instance_temperature: float = 0.05
    patience: int = 3  # epochs without a better validation score before stopping (0: never stop early)
    min_epochs: int | None = (
        None  # never stop before this many epochs (default: half of `epochs`, while the LR is high)
    )
    val_fraction: float = 0.05
    amp: bool = True  # bf16 autocast on CUDA
    cuda_batch_size: int | None = None  # batch size on a GPU, where memory allows larger contrastive batches

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown fine-tuning strategy {self.strategy!r}; choose one of {STRATEGIES}")

    @property
    def image_blocks(self) -> int | None:
        """Trainable image-tower blocks for Tower.split: 0, N, or None (all)."""
        return {"heads": 0, "partial": self.unfreeze_blocks, "full": None}[self.strategy]

    @property
    def text_layers(self) -> int | None:
        return {"heads": 0, "partial": self.unfreeze_text_layers, "full": None}[self.strategy]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainData:
    """Cached inputs of the trainable image suffix, and the texts each item is paired with.

    clean [N, ...]; views [N, V, ...] or None; texts: the T distinct texts; text_index [N] or
    [N, A] (A alternatives, one drawn per item and step); labels [N] (same label = positive).
    """

    clean: torch.Tensor
    views: torch.Tensor | None
    texts: list[str]
    text_index: torch.Tensor
    labels: torch.Tensor


def cosine_schedule(step: int, total: int, warmup: float) -> float:
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


class Trainer:
    """Fits `encoder` in place; `suffix` is the trainable end of the image tower (Identity for heads)."""

    def __init__(self, encoder: DualEncoder, suffix: nn.Module, cfg: TrainConfig):
        self.encoder, self.suffix, self.cfg = encoder, suffix, cfg
        self.device = encoder.device
        for p in encoder.parameters():
            p.requires_grad_(False)
        tower_params = [p for m in [suffix, *encoder.text_tower.tail(cfg.text_layers)] for p in m.parameters()]
        heads = [encoder.image_head, encoder.text_head] + (
            [encoder.instance_head] if encoder.instance_head is not None else []
        )
        head_params = [p for h in heads for p in h.parameters()] + [encoder.logit_scale]
        for p in tower_params + head_params:
            p.requires_grad_(True)
        self.text_trainable = cfg.text_layers != 0
        groups = [{"params": head_params, "lr": cfg.lr}]
        if tower_params:
            groups.append({"params": list({id(p): p for p in tower_params}.values()), "lr": cfg.tower_lr})
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.base_lrs = [g["lr"] for g in groups]
        self.autocast = cfg.amp and self.device.type == "cuda"

    def image_embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(category, instance) embeddings; the instance one is the category one without an instance head."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            category, instance = self.encoder.image_parts(
                self.suffix(inputs.to(self.device, non_blocking=True).float())
            )
        return category.float(), (instance if instance is not None else category).float()

    def text_embed(self, texts: list[str], frozen: torch.Tensor | None, which: torch.Tensor) -> torch.Tensor:
        """Head embeddings of texts[which]; each distinct text goes through the tower once."""
        uniq, inverse = torch.unique(which, return_inverse=True)
        if frozen is not None:
            feats = frozen[uniq.cpu()].to(self.device)
        else:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                feats = self.encoder.text_tower([texts[i] for i in uniq.tolist()])
        return self.encoder.text_head(feats)[inverse.to(self.device)]

    @torch.inference_mode()
    def frozen_text_features(self, texts: list[str]) -> torch.Tensor | None:
        if self.text_trainable:
            return None
        return torch.cat([self.encoder.text_tower(texts[i : i + 256]).float().cpu() for i in range(0, len(texts), 256)])

    def fit(
        self,
        data: TrainData,
        validate: Callable[[], dict] | None = None,
        on_epoch: Callable[[int, dict], None] | None = None,
        progress: bool = True,
    ) -> list[dict]:
        """Train; after each epoch run `validate` (-> dict with 'val_score', higher is better), keep
        the best state and stop after `patience` epochs without improvement (not before
        `min_epochs`). One record per epoch."""
        cfg, n = self.cfg, len(data.clean)
        batch_size = cfg.cuda_batch_size if self.device.type == "cuda" and cfg.cuda_batch_size else cfg.batch_size
        if n < 2:
            raise ValueError(f"need at least 2 training items, got {n}")
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        frozen = self.frozen_text_features(data.texts)
        steps_per_epoch = max(1, -(-n // batch_size))
        total, step = cfg.epochs * steps_per_epoch, 0
        best, best_state, since_best, history = -math.inf, None, 0, []
        bar = tqdm(range(cfg.epochs), desc=f"fine-tune ({cfg.strategy})", unit="epoch", disable=not progress)
        for epoch in bar:
            self._train_mode(True)
            t0, sums, batches = time.perf_counter(), {"loss": 0.0, "text_loss": 0.0, "instance_loss": 0.0}, 0
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2:
                    continue
                for g, base in zip(self.opt.param_groups, self.base_lrs):
                    g["lr"] = base * cosine_schedule(step, total, cfg.warmup)
                losses = self._step(data, idx, frozen, gen)
                for k, v in losses.items():
                    sums[k] += v
                batches, step = batches + 1, step + 1
            record = {
                "epoch": epoch,
                **{k: v / max(batches, 1) for k, v in sums.items()},
                "lr": self.opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            if validate is not None:
                self._train_mode(False)
                record |= validate()
                # a tie keeps the later (longer-trained) state but does not reset the patience
                since_best = 0 if record["val_score"] > best else since_best + 1
                if record["val_score"] >= best:
                    best, best_state = record["val_score"], self._trainable_state()
            history.append(record)
            bar.set_postfix({k: f"{record[k]:.4f}" for k in ("loss", "val_score") if k in record})
            if on_epoch:
                on_epoch(epoch, record)
            min_epochs = cfg.epochs // 2 if cfg.min_epochs is None else cfg.min_epochs
            if validate is not None and cfg.patience and since_best >= cfg.patience and epoch + 1 >= min_epochs:
                break
        if best_state is not None:
            self._load_trainable_state(best_state)
        self._train_mode(False)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        return history

    def _step(self, data: TrainData, idx: torch.Tensor, frozen: torch.Tensor | None, gen: torch.Generator) -> dict:
        cfg = self.cfg
        choice = data.text_index[idx]
        if choice.dim() == 2:
            choice = choice.gather(1, torch.randint(choice.shape[1], (len(idx),), generator=gen)[:, None]).squeeze(1)
        labels = data.labels[idx].to(self.device)
        txt = self.text_embed(data.texts, frozen, choice)
        clean, clean_inst = self.image_embed(data.clean[idx])
        text_loss = multi_positive_contrastive(clean, txt, labels, self.encoder.logit_scale)
        inst_loss = torch.zeros((), device=self.device)
        if data.views is not None:
            pick = torch.randint(data.views.shape[1], (len(idx),), generator=gen)
            view, view_inst = self.image_embed(data.views[idx, pick])
            text_loss = (text_loss + multi_positive_contrastive(view, txt, labels, self.encoder.logit_scale)) / 2
            if cfg.instance_weight:
                inst_loss = instance_contrastive(view_inst, clean_inst, cfg.instance_temperature)
        loss = text_loss + cfg.instance_weight * inst_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.encoder.logit_scale.clamp_(0, 4.6052)  # temperature >= 0.01, as in CLIP
        return {"loss": loss.item(), "text_loss": text_loss.item(), "instance_loss": inst_loss.item()}

    def _train_mode(self, on: bool) -> None:
        self.encoder.eval()  # frozen parts (and folded BatchNorm) always in eval mode
        heads = [self.encoder.image_head, self.encoder.text_head, self.encoder.instance_head]
        for m in [
            self.suffix,
            *[h for h in heads if h is not None],
            *self.encoder.text_tower.tail(self.cfg.text_layers),
        ]:
            m.train(on)

    def _trainable_state(self) -> dict:
        return {id(p): p.detach().clone() for g in self.opt.param_groups for p in g["params"]}

    def _load_trainable_state(self, state: dict) -> None:
        with torch.no_grad():
            for g in self.opt.param_groups:
                for p in g["params"]:
                    p.copy_(state[id(p)])


@torch.inference_mode()
def embed_inputs(encoder: DualEncoder, suffix: nn.Module, inputs, batch_size: int = 1024) -> torch.Tensor:
    """Image embeddings from cached suffix inputs (what the trained encoder gives on the pixels)."""
    out = [
        encoder.embed_features(suffix(torch.as_tensor(inputs[i : i + batch_size]).to(encoder.device).float()))
        .float()
        .cpu()
        for i in range(0, len(inputs), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros((0, encoder.embed_dim))


@torch.inference_mode()
def tower_outputs(suffix: nn.Module, inputs, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Image tower features from cached suffix inputs."""
    return torch.cat(
        [
            suffix(torch.as_tensor(inputs[i : i + batch_size]).to(device).float()).float().cpu()
            for i in range(0, len(inputs), batch_size)
        ]
    )


def validation_scores(
    encoder: DualEncoder,
    suffix: nn.Module,
    clean,
    views,
    labels: torch.Tensor,
    category_texts: list[str],
    label_names: list[int],
) -> dict:
    """Scores on held-out products that stay meaningful on small sets: image->image category
    R@1 (leave-one-out nearest neighbour), zero-shot category accuracy (nearest category text) and
    shopper-view -> clean instance R@1 among the held-out products. val_score is their mean (the
    instance term only when there are views)."""
    img = embed_inputs(encoder, suffix, clean)
    labels = labels.cpu()
    out = {}
    if len(img) > 1:
        sims = img @ img.T
        sims.fill_diagonal_(-math.inf)
        out["val_image_recall_at_1"] = float((labels[sims.argmax(dim=1)] == labels).float().mean())
    with torch.inference_mode():
        txt = encoder.encode_texts(category_texts).float().cpu()
    out["val_zero_shot_accuracy"] = float(
        (torch.tensor(label_names)[(img @ txt.T).argmax(dim=1)] == labels).float().mean()
    )
    if views is not None:
        view = embed_inputs(encoder, suffix, views[:, 0])
        out["val_shopper_recall_at_1"] = float(((view @ img.T).argmax(dim=1) == torch.arange(len(img))).float().mean())
    out["val_score"] = float(sum(out.values()) / len(out))
    return out


def load_strategy(name_or_path: str, **overrides) -> TrainConfig:
    """A TrainConfig from models/configs/strategies/<name>.json (or a JSON path), with overrides."""
    values = {
        k: v for k, v in read_preset(name_or_path, STRATEGIES_DIR, "fine-tuning strategy").items() if k != "description"
    }
    unknown = set(values) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"strategy preset {name_or_path!r}: unknown training settings {sorted(unknown)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "batch_size" in overrides:  # an explicit batch size holds on every device
        overrides.setdefault("cuda_batch_size", None)
    return TrainConfig(**(values | overrides))
