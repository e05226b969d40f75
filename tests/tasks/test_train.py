import numpy as np
import pytest
import torch

import lensflow.tasks.helpers.features as features_module
from lensflow.models.encoder import load_encoder
from lensflow.models.train import load_strategy
from lensflow.tasks.embed import embed_catalog
from lensflow.tasks.train import train_encoder


@pytest.mark.parametrize("strategy", ["heads", "partial", "full"])
def test_train_encoder_each_strategy_gives_a_self_consistent_model(project, tiny_catalog, tmp_path, strategy):
    cfg = load_strategy(strategy, epochs=3, batch_size=8, unfreeze_blocks=1)
    cache = project.path(project.cache_dir)
    r = train_encoder("tiny", tiny_catalog, project.data_path, "md5-a", cache, tmp_path / "m", cfg, progress=False)
    assert r.params["strategy"] == strategy and r.params["train_rows"] == (tiny_catalog.split == "train").sum()
    assert 1 <= len(r.history) <= 3 and "val_score" in r.history[0]
    assert r.tower_features.shape[0] == len(tiny_catalog)
    # The vectors the flow indexes (head on the trained tower's features) are what the saved model computes.
    loaded = load_encoder(tmp_path / "m")
    assert loaded.config["fine_tune"]["strategy"] == strategy
    fresh = embed_catalog(loaded, tiny_catalog, project.data_path, progress=False)
    indexed = embed_catalog(r.encoder, tiny_catalog, project.data_path, tower_features=r.tower_features, progress=False)
    np.testing.assert_allclose(indexed, fresh, atol=2e-3 if strategy == "full" else 1e-5)


def test_heads_retrain_on_unchanged_data_never_runs_the_tower(project, tiny_catalog, tmp_path, monkeypatch):
    cfg = load_strategy("heads", epochs=2, batch_size=8)
    cache = project.path(project.cache_dir)
    first = train_encoder("tiny", tiny_catalog, project.data_path, "md5-a", cache, tmp_path / "a", cfg, progress=False)
    assert not first.feature_cache_hit

    def no_tower(*a, **k):
        raise AssertionError("the image tower ran although its features were cached")

    monkeypatch.setattr(features_module, "iter_encoded", no_tower)
    second = train_encoder("tiny", tiny_catalog, project.data_path, "md5-a", cache, tmp_path / "b", cfg, progress=False)
    assert second.feature_cache_hit
    assert torch.equal(
        torch.from_numpy(np.asarray(second.tower_features)), torch.from_numpy(np.asarray(first.tower_features))
    )
    with pytest.raises(AssertionError, match="image tower ran"):
        train_encoder("tiny", tiny_catalog, project.data_path, "md5-b", cache, tmp_path / "c", cfg, progress=False)
