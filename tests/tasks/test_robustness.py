"""The held-out shopper photos and the per-condition evaluation built on them."""

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lensflow.tasks.helpers.heldout_photos import COMBINED, CONDITIONS, cutout, other_product, shopper_photo, upright


def _product(size=(40, 56)):
    """A light garment-like shape on the black studio background, as in Fashion-MNIST."""
    im = Image.new("RGB", size, (0, 0, 0))
    px = np.asarray(im).copy()
    px[6:50, 8:32] = (200, 190, 180)
    px[20:30, 14:26] = (30, 30, 30)  # a dark print inside the product: part of it, not background
    return Image.fromarray(px)


def test_generator_shares_no_code_with_training_augmentation():
    source = Path("tasks/helpers/heldout_photos.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and (m.startswith("models") or m.startswith("tasks")) for m in imported), imported


@pytest.mark.parametrize("condition", [*CONDITIONS, COMBINED])
def test_every_condition_makes_a_decodable_photo_with_the_product_inside(condition):
    photo = shopper_photo(_product(), "p1", condition, other=_product((30, 30)))
    shown = upright(photo)
    x0, y0, x1, y1 = photo.box
    assert 0 <= x0 < x1 <= shown.width and 0 <= y0 < y1 <= shown.height
    assert min(shown.size) >= 192  # a phone-sized photo, not the catalog's thumbnail
    again = shopper_photo(_product(), "p1", condition, other=_product((30, 30)))
    assert again.data == photo.data  # a fixed draw per (condition, product)
    assert shopper_photo(_product(), "p2", condition, other=_product((30, 30))).data != photo.data


def test_exif_photos_are_stored_sideways_and_tagged():
    tags = set()
    for pid in ("a", "b", "c", "d", "e", "f"):
        photo = shopper_photo(_product(), pid, "exif")
        stored = Image.open(io.BytesIO(photo.data))
        tags.add(stored.getexif().get(0x0112))
        shown = ImageOps.exif_transpose(stored)
        crop = np.asarray(shown.crop(photo.box).convert("L"), dtype=np.float32)
        assert crop.mean() > 60  # the product is where the box says once the tag is applied
    assert tags <= {3, 6, 8} and len(tags) >= 2


def test_cutout_keeps_dark_parts_inside_the_product():
    alpha = np.asarray(cutout(_product()).getchannel("A"))
    assert alpha[25, 20] == 255 and alpha[0, 0] == 0


def test_the_second_product_is_another_one():
    ids = ["a", "b", "c"]
    assert all(other_product(ids, pid, "second_product") != pid for pid in ids)
    assert other_product(["only"], "only", "second_product") == "only"


def test_unknown_condition_lists_the_known_ones():
    with pytest.raises(ValueError, match="framing"):
        shopper_photo(_product(), "p", "fog")


def test_robustness_reports_every_condition_and_caches_the_localized_pixels(project, tiny_catalog, monkeypatch):
    import lensflow.tasks.robustness as R
    from lensflow.models.encoder import build_encoder
    from lensflow.tasks.embed import embed_catalog
    from lensflow.tasks.evaluate import EvalResult, Gallery

    enc = build_encoder("tiny")
    vecs = np.asarray(embed_catalog(enc, tiny_catalog, project.data_path))
    gallery = Gallery(
        tiny_catalog["product_id"].to_numpy(str),
        tiny_catalog["category"].to_numpy(str),
        tiny_catalog["split"].to_numpy(str),
        vecs,
    )
    cache = project.path(project.cache_dir)
    table = R.robustness(
        enc,
        gallery,
        tiny_catalog,
        project.data_path,
        per_condition=3,
        combined=4,
        cache_dir=cache,
        data_md5="abc",
        progress=False,
    )
    assert list(table) == [*CONDITIONS, COMBINED]
    assert table[COMBINED]["queries"] == 4 and table["framing"]["queries"] == 3
    for row in table.values():
        assert 0 <= row["recall_at_1"] <= row["recall_at_10"] <= 1 and 0 <= row["category_precision_at_10"] <= 1

    def no_photos(*a, **k):
        raise AssertionError("the cached pixels were not used")

    monkeypatch.setattr(R, "heldout_photos", no_photos)
    again = R.robustness(
        enc,
        gallery,
        tiny_catalog,
        project.data_path,
        per_condition=3,
        combined=4,
        cache_dir=cache,
        data_md5="abc",
        progress=False,
    )
    assert again == table
    result = R.add_robustness(
        EvalResult({"shopper_recall_at_1": 0.9}, {}, "md5"),
        enc,
        gallery,
        tiny_catalog,
        project.data_path,
        3,
        4,
        cache,
        "abc",
        progress=False,
    )
    assert result.metrics["generalisation_gap"] == pytest.approx(0.9 - table[COMBINED]["recall_at_1"])
    assert (
        result.eval_set_md5 != "md5"
        and R.table_of(result.metrics)[COMBINED]["recall_at_1"] == table[COMBINED]["recall_at_1"]
    )


def test_condition_metrics_count_the_photographed_product_and_its_category():
    from lensflow.tasks.evaluate import Gallery
    from lensflow.tasks.robustness import condition_metrics

    ids = np.array(["a", "b", "c", "d"])
    vectors = np.eye(4, dtype=np.float32)
    gallery = Gallery(ids, np.array(["x", "x", "y", "y"]), np.array(["test"] * 4), vectors)
    queries = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0]], dtype=np.float32)  # a found at 1; b found at 2
    m = condition_metrics(["a", "b"], queries / np.linalg.norm(queries, axis=1, keepdims=True), gallery)
    assert m["recall_at_1"] == 0.5 and m["recall_at_10"] == 1.0
