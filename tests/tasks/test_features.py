"""The feature cache's resumable parts: an interrupted encoding resumes with only the missing rows."""

import numpy as np
import pytest
import torch

from lensflow.models.preprocess import ImagePreprocess
from lensflow.tasks.helpers.features import ResumableParts, cached_image_features


def mean_colour(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.mean(dim=(2, 3))


class Interrupted(Exception):
    pass


def counting(fn, fail_after: int | None = None):
    """fn, counting the rows it encodes; raises Interrupted once `fail_after` rows were encoded."""
    seen = []

    def wrapped(pixels):
        if fail_after is not None and sum(seen) >= fail_after:
            raise Interrupted
        seen.append(len(pixels))
        return fn(pixels)

    return wrapped, seen


def test_interrupted_encoding_resumes_with_only_the_missing_rows(project, tiny_catalog, tmp_path):
    pre = ImagePreprocess(size=16)
    args = dict(
        preprocess=pre, catalog=tiny_catalog, data_dir=project.data_path, data_md5="md5-a", batch_size=4, progress=False
    )
    whole, _ = cached_image_features(mean_colour, "fp", cache_dir=tmp_path / "uninterrupted", **args)

    first, seen = counting(mean_colour, fail_after=12)
    with pytest.raises(Interrupted):
        cached_image_features(first, "fp", cache_dir=tmp_path / "cache", part_rows=8, **args)
    assert sum(seen) == 12  # parts [0, 8) saved; rows 8..11 encoded but their part never completed
    parts = sorted(p.name for p in (tmp_path / "cache").glob("features/*/parts/*-*.npy"))
    assert parts == ["000000000000-000000000008.npy"]

    second, seen = counting(mean_colour)
    feats, hit = cached_image_features(second, "fp", cache_dir=tmp_path / "cache", part_rows=10, **args)
    assert not hit and sum(seen) == len(tiny_catalog) - 8  # a different part size fills the same gap
    np.testing.assert_array_equal(feats, whole)
    assert not list((tmp_path / "cache").glob("features/*/parts"))  # parts are gone once the whole array is saved
    third, seen = counting(mean_colour)
    again, hit = cached_image_features(third, "fp", cache_dir=tmp_path / "cache", **args)
    assert hit and seen == [] and np.array_equal(again, whole)


def test_parts_of_another_catalog_are_not_reused(tmp_path):
    old = ResumableParts(tmp_path, ["a", "b", "c"], part_rows=2)
    batches = iter([np.ones((2, 1)), np.ones((1, 1))])
    old.fill(old.missing(), batches)
    assert ResumableParts(tmp_path, ["a", "b", "c"], part_rows=2).missing() == []
    fresh = ResumableParts(tmp_path, ["a", "b", "d"], part_rows=2)
    assert fresh.done_rows == 0 and fresh.missing() == [(0, 2), (2, 3)]


def test_gaps_are_cut_into_parts():
    parts = ResumableParts.__new__(ResumableParts)
    parts.n, parts.part_rows, parts.done = 10, 3, [(3, 5), (8, 9)]
    assert parts.missing() == [(0, 3), (5, 8), (9, 10)]


def test_a_short_encoder_is_an_error_not_a_short_array(tmp_path):
    parts = ResumableParts(tmp_path, ["a", "b", "c"], part_rows=2)
    with pytest.raises(RuntimeError, match="stopped after 2 rows; 3 were expected"):
        parts.fill(parts.missing(), iter([np.ones((2, 1))]))
