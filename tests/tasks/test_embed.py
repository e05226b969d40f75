import numpy as np

from lensflow.models.encoder import build_encoder
from lensflow.tasks.embed import embed_catalog
from lensflow.tasks.helpers.features import suffix_inputs


def image_tower_features(*args, **kwargs):
    """(features, cache hit) of an untrained encoder: its frozen prefix is the whole image tower."""
    return suffix_inputs(*args, **kwargs)[1:]


def test_cached_tower_features_give_the_same_embeddings(project, tiny_catalog):
    enc = build_encoder("tiny")
    data, cache = project.data_path, project.path(project.cache_dir)
    feats, hit = image_tower_features(enc, tiny_catalog, data, cache, "md5-a", batch_size=7, progress=False)
    assert not hit and feats.shape == (len(tiny_catalog), enc.image_tower.out_dim)
    again, hit = image_tower_features(enc, tiny_catalog.iloc[::-1], data, cache, "md5-a", progress=False)
    assert hit and np.array_equal(again, feats[::-1])  # cached, aligned by product id
    assert not image_tower_features(enc, tiny_catalog, data, cache, "md5-b", progress=False)[1]  # new data version
    full = embed_catalog(enc, tiny_catalog, data, batch_size=5, loader_workers=1, progress=False)  # decode in a worker
    fast = embed_catalog(enc, tiny_catalog, data, tower_features=feats, progress=False)
    assert full.shape == (len(tiny_catalog), enc.embed_dim)
    np.testing.assert_allclose(fast, full, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)


def test_feature_cache_key_covers_data_tower_preprocessing_augmentation_and_seed(project, tiny_catalog):
    from lensflow.models.augment import ShopperAugment

    data, cache = project.data_path, project.path(project.cache_dir)
    enc = build_encoder("tiny")
    base, hit = image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False)
    assert not hit and image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False)[1]
    bigger = build_encoder(
        {
            "image_tower": {"type": "tiny-conv", "size": 40, "width": 16, "seed": 0},
            "text_tower": {"type": "hash-text", "dim": 32},
            "embed_dim": 16,
        }
    )
    assert not image_tower_features(bigger, tiny_catalog, data, cache, "md5-a", progress=False)[1]  # preprocessing
    aug = ShopperAugment()
    viewed, hit = image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False, augment=aug, seed=1)
    assert not hit and not np.allclose(viewed, base)
    assert image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False, augment=aug, seed=1)[1]
    assert not image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False, augment=aug, seed=2)[1]
    other = ShopperAugment(rotate=5.0)
    assert not image_tower_features(enc, tiny_catalog, data, cache, "md5-a", progress=False, augment=other, seed=1)[1]


def test_embedding_batches_stream_in_order_and_leave_grad_mode_alone(project, tiny_catalog):
    import torch

    from lensflow.tasks.embed import embedding_batches

    enc = build_encoder("tiny")
    stream = embedding_batches(enc, tiny_catalog, project.data_path, batch_size=4, progress=False)
    first = next(stream)
    assert first.shape == (4, enc.embed_dim) and not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    streamed = np.concatenate([first, *stream])
    np.testing.assert_allclose(streamed, embed_catalog(enc, tiny_catalog, project.data_path, progress=False), atol=1e-6)
