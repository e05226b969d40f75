import torch

from lensflow.models.augment import ShopperAugment
from lensflow.tasks.helpers import images


def test_auto_workers_start_a_loader_only_for_long_augmented_passes(monkeypatch):
    monkeypatch.setattr(images.os, "cpu_count", lambda: 2)
    assert images.auto_workers(60_000, ShopperAugment()) == 1
    assert images.auto_workers(60_000, None) == 0  # plain decoding: the model wants every core
    assert images.auto_workers(1_000, ShopperAugment()) == 0  # a worker's start-up costs more
    monkeypatch.setattr(images.os, "cpu_count", lambda: 1)
    assert images.auto_workers(60_000, ShopperAugment()) == 0


def test_model_threads_give_way_to_loader_workers_and_come_back(monkeypatch):
    monkeypatch.setattr(images.os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with images.threads_beside(1):
            assert torch.get_num_threads() == 3
        with images.threads_beside(0):
            assert torch.get_num_threads() == 4
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_loader_workers_setting_accepts_auto(monkeypatch):
    from lensflow.core.settings import Settings

    monkeypatch.setenv("LENSFLOW_LOADER_WORKERS", "auto")
    assert Settings().loader_workers is None
    monkeypatch.setenv("LENSFLOW_LOADER_WORKERS", "2")
    assert Settings().loader_workers == 2
