"""The localizer: the real U^2-Net-p from the installed wheel on synthetic photos, and its pure geometry."""

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lensflow.models.encoder import build_encoder, load_encoder
from lensflow.models.localize import LocalizeConfig, Localizer, regions_of, square_crop, tilt


@pytest.fixture(scope="module")
def localizer():
    return Localizer.load({})


def _photo(boxes, size=(320, 240), seed=0):
    """Grey textured table with solid coloured objects at `boxes`."""
    rng = np.random.default_rng(seed)
    bg = np.clip(120 + rng.normal(0, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(bg)
    d = ImageDraw.Draw(im)
    for box, colour in zip(boxes, [(240, 40, 40), (30, 60, 230)]):
        d.ellipse(box, fill=colour)
    return im


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_finds_the_product_off_centre(localizer):
    truth = (180, 120, 300, 220)
    found = localizer.regions(_photo([truth]))
    assert found, "nothing found on a photo with one obvious product"
    assert _iou(found[0].box, truth) > 0.6


def test_two_products_give_two_regions(localizer):
    a, b = (20, 30, 120, 200), (200, 40, 300, 210)
    found = localizer.regions(_photo([a, b]))
    assert len(found) >= 2
    assert {max(range(2), key=lambda i: _iou(r.box, (a, b)[i])) for r in found[:2]} == {0, 1}


def test_crop_is_square_and_holds_the_product(localizer):
    truth = (200, 20, 260, 200)  # tall and thin: the square keeps its aspect (no squashing)
    crop = localizer.crop(_photo([truth]))
    assert crop.width == crop.height
    assert 180 * 1.05 <= crop.width <= 180 * 1.6
    inside = localizer.crop(_photo([truth]), box=(0, 0, 160, 240))  # a box on the empty left half: the table itself
    assert inside.width <= 240


def test_tilt_turns_an_elongated_region_upright():
    cfg = LocalizeConfig()
    ys, xs = np.mgrid[0:60, 0:12]
    for angle in (-25, -10, 0, 15, 30):
        t = math.radians(angle)  # rotate a vertical bar counter-clockwise by `angle` (image y points down)
        x = xs.ravel() - 6.0
        y = ys.ravel() - 30.0
        rx, ry = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
        assert tilt(rx, ry, cfg) == pytest.approx(-angle, abs=1.0)
    round_x, round_y = np.mgrid[0:20, 0:20]
    assert tilt(round_x.ravel().astype(float), round_y.ravel().astype(float), cfg) == 0.0  # no axis: no turn


def test_regions_of_ignores_specks_and_orders_by_mass():
    sal = np.zeros((100, 100), np.float32)
    sal[10:60, 10:40] = 1.0
    sal[70:90, 60:95] = 0.8
    sal[2, 98] = 1.0  # a speck
    found = regions_of(sal, (200, 100), LocalizeConfig())
    assert len(found) == 2
    assert found[0].box == (20, 10, 80, 60) and found[0].score > found[1].score  # mean saliency 1.0 vs 0.8


def test_square_crop_pads_with_the_edge_colour_outside_the_photo():
    im = Image.new("RGB", (100, 100), (10, 200, 30))
    crop = square_crop(im, (0, 0, 50, 100), 0.2, 0.0)
    assert crop.size == (140, 140)
    assert crop.getpixel((0, 70)) == (10, 200, 30)


def test_encoder_saves_its_localizer_and_photos_embed_the_same_after_loading(tmp_path, localizer):
    from lensflow.models.encoder import load_preset

    config = load_preset("tiny") | {"localize": {"side": 160}}
    enc = build_encoder(config)
    assert enc.localizer is not None and enc.localizer.config.side == 160
    enc.save(tmp_path / "m")
    assert (tmp_path / "m" / "localizer" / "u2netp.onnx").stat().st_size > 4_000_000
    again = load_encoder(tmp_path / "m")
    photo = _photo([(180, 120, 300, 220)])
    with torch.inference_mode():
        assert torch.equal(enc.encode_photos([photo]), again.encode_photos([photo]))
        whole = enc.encode_images(enc.preprocess([photo]))
        located = enc.encode_photos([photo])
    assert located.shape == (1, 3, enc.embed_dim)  # the crop, turned -15 and +15 degrees too
    assert not torch.allclose(whole, located[:, 0])  # the crop, not the whole photo, was embedded


def test_without_a_localizer_a_box_still_crops():
    enc = build_encoder("tiny")
    assert enc.localizer is None
    photo = _photo([(180, 120, 300, 220)])
    assert [v.size for v in enc.photo_views(photo, (180, 120, 300, 220))] == [(120, 100)]
    assert enc.photo_views(photo) == [photo]
    with torch.inference_mode():
        assert enc.encode_photos([photo, photo]).shape == (2, 1, enc.embed_dim)


def test_views_are_the_crop_and_its_turned_copies(localizer):
    views = localizer.views(_photo([(180, 120, 300, 220)]))
    assert len(views) == len(localizer.config.turns) == 3 and len({v.size for v in views}) == 1
    upright, left, right = (np.asarray(v, dtype=np.float32) for v in views)
    assert np.abs(upright - left).mean() > 1 and np.abs(left - right).mean() > 1


def test_catalog_look_and_a_crop_made_to_match_it(localizer):
    from lensflow.models.localize import catalog_look

    grey_studio = [Image.new("RGB", (28, 28), (0, 0, 0)) for _ in range(9)]
    for im in grey_studio:
        ImageDraw.Draw(im).rectangle((6, 4, 22, 24), fill=(180, 180, 180))
    assert catalog_look(grey_studio) == {"background": (0, 0, 0), "grayscale": True}
    colourful = [
        Image.new("RGB", (20, 20), tuple(int(v) for v in np.random.default_rng(i).integers(0, 255, 3)))
        for i in range(9)
    ]
    assert catalog_look(colourful) == {"background": None, "grayscale": False}

    photo = _photo([(180, 120, 300, 220)])  # a red product on a grey table
    matched = Localizer(
        localizer.model, LocalizeConfig(background=(0, 0, 0), grayscale=True, autocontrast=None, turns=(0.0,))
    )
    crop = np.asarray(matched.views(photo)[0], dtype=np.float32)
    assert np.abs(crop[..., 0] - crop[..., 1]).max() <= 1  # grey, as the catalog
    corners = np.concatenate([crop[:4, :4].reshape(-1, 3), crop[-4:, -4:].reshape(-1, 3)])
    assert corners.mean() < 20  # the table around the product became the studio black
    plain = np.asarray(
        Localizer(localizer.model, LocalizeConfig(autocontrast=None, turns=(0.0,))).views(photo)[0], dtype=np.float32
    )
    assert (
        np.concatenate([plain[:4, :4].reshape(-1, 3), plain[-4:, -4:].reshape(-1, 3)]).mean() > 80
    )  # without: the table
