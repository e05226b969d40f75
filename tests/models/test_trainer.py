import pytest
import torch

from lensflow.models.encoder import build_encoder
from lensflow.models.towers import weights_digest
from lensflow.models.train import (
    TrainConfig,
    TrainData,
    Trainer,
    cosine_schedule,
    embed_inputs,
    load_strategy,
    validation_scores,
)

TEXTS = ["red shirt", "green bag", "blue shoe"]


def toy_data(enc, split, n=60, views=True, seed=0):
    """Three labels told apart by colour; views are the same images with noise (a stand-in for shopper photos)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    base = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])[labels][:, :, None, None].expand(n, 3, 32, 32)
    pixels = (base + 0.6 * torch.randn(n, 3, 32, 32, generator=g)).clamp(-1, 1)
    noisy = (pixels + 0.3 * torch.randn(n, 3, 32, 32, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        clean, view = split.prefix(pixels), split.prefix(noisy)
    return TrainData(clean, view[:, None] if views else None, TEXTS, labels.clone(), labels)


@pytest.mark.parametrize("strategy", ["heads", "partial", "full"])
def test_each_strategy_learns_and_trains_only_its_part(strategy):
    enc = build_encoder("tiny")
    cfg = TrainConfig(
        strategy=strategy, epochs=25, batch_size=30, lr=1e-2, tower_lr=1e-2, unfreeze_blocks=1, patience=0
    )
    split = enc.image_tower.split(cfg.image_blocks)
    data = toy_data(enc, split)
    first = weights_digest([enc.image_tower.net[0]])  # first conv: frozen unless full
    last = weights_digest([enc.image_tower.net[2]])  # last conv: trained by partial and full
    text = weights_digest([enc.text_tower])
    history = Trainer(enc, split.suffix, cfg).fit(data, progress=False)
    assert history[-1]["loss"] < history[0]["loss"] * 0.8
    assert (weights_digest([enc.image_tower.net[0]]) != first) == (strategy == "full")
    assert (weights_digest([enc.image_tower.net[2]]) != last) == (strategy != "heads")
    assert (weights_digest([enc.text_tower]) != text) == (strategy != "heads")
    emb = embed_inputs(enc, split.suffix, data.clean)
    with torch.inference_mode():
        txt = enc.encode_texts(TEXTS)
    assert ((emb @ txt.T).argmax(dim=1) == data.labels).float().mean() > 0.9
    assert not any(p.requires_grad for p in enc.parameters())  # frozen again after training


def test_instance_loss_is_trained_only_with_views():
    enc = build_encoder("tiny")
    split = enc.image_tower.split(0)
    without = Trainer(enc, split.suffix, TrainConfig(epochs=2, batch_size=30, patience=0)).fit(
        toy_data(enc, split, views=False), progress=False
    )
    assert all(h["instance_loss"] == 0.0 for h in without)
    enc = build_encoder("tiny")
    with_views = Trainer(enc, split.suffix, TrainConfig(epochs=2, batch_size=30, patience=0)).fit(
        toy_data(enc, split), progress=False
    )
    assert all(h["instance_loss"] > 0.0 for h in with_views)


def test_early_stopping_keeps_the_best_epoch():
    enc = build_encoder("tiny")
    split = enc.image_tower.split(0)
    scores = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.1, 0.0])
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in enc.heads_state().items()})
        return {"val_score": next(scores)}

    history = Trainer(enc, split.suffix, TrainConfig(epochs=7, batch_size=30, patience=2, min_epochs=1)).fit(
        toy_data(enc, split), validate, progress=False
    )
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # stopped 2 epochs after the best
    best = snapshots[1]
    assert all(torch.equal(enc.heads_state()[k], best[k]) for k in best)


def test_early_stopping_waits_for_min_epochs():
    enc = build_encoder("tiny")
    split = enc.image_tower.split(0)
    history = Trainer(enc, split.suffix, TrainConfig(epochs=8, batch_size=30, patience=1)).fit(
        toy_data(enc, split), lambda: {"val_score": 0.5}, progress=False
    )
    assert len(history) == 4  # flat score: stops at epochs // 2


def test_validation_scores_on_separable_data():
    enc = build_encoder("tiny")
    split = enc.image_tower.split(0)
    data = toy_data(enc, split)
    Trainer(enc, split.suffix, TrainConfig(epochs=25, batch_size=30, lr=1e-2, patience=0)).fit(data, progress=False)
    out = validation_scores(enc, split.suffix, data.clean, data.views, data.labels, TEXTS, [0, 1, 2])
    assert out["val_image_recall_at_1"] > 0.9 and out["val_zero_shot_accuracy"] > 0.9
    assert 0 <= out["val_shopper_recall_at_1"] <= 1
    assert out["val_score"] == pytest.approx(
        (out["val_image_recall_at_1"] + out["val_zero_shot_accuracy"] + out["val_shopper_recall_at_1"]) / 3
    )


def test_cosine_schedule_warms_up_then_decays():
    lrs = [cosine_schedule(s, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


def test_strategy_presets_and_overrides():
    cfg = load_strategy("partial", epochs=3, lr=None)
    assert cfg.strategy == "partial" and cfg.epochs == 3 and cfg.lr == 1e-3 and cfg.image_blocks == 2
    assert load_strategy("full").image_blocks is None and load_strategy("heads").image_blocks == 0
    assert (
        load_strategy("full").cuda_batch_size == 1024 and load_strategy("full", batch_size=64).cuda_batch_size is None
    )
    with pytest.raises(ValueError, match="unknown fine-tuning strategy 'no-such'; known presets: .*heads"):
        load_strategy("no-such")
    with pytest.raises(ValueError, match="unknown fine-tuning strategy"):
        TrainConfig(strategy="lora")
