import numpy as np
from PIL import Image

from lensflow.models.preprocess import ImagePreprocess


def test_non_square_grayscale_is_cropped_to_rgb_square_in_range():
    pre = ImagePreprocess(size=24)
    image = Image.fromarray(np.tile(np.arange(60, dtype=np.uint8), (30, 1)), mode="L")  # 60 wide, 30 high
    x = pre([image, image.convert("RGB")])
    assert x.shape == (2, 3, 24, 24)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert np.allclose(x[0].numpy(), x[1].numpy())
    # centre crop keeps the middle columns: the left edge of the crop is brighter than the image's left edge
    assert float(x[0, 0, 12, 0]) > -1.0 + 2 * 10 / 255


def test_small_image_is_upscaled():
    arr = ImagePreprocess(size=96).to_array(Image.new("L", (28, 28), 255))
    assert arr.shape == (96, 96, 3) and arr.min() == 255


def _jpeg(side: int) -> bytes:
    import io

    yy, xx = np.mgrid[0:side, 0:side]
    arr = np.stack([xx * 255 // side, yy * 255 // side, (xx + yy) * 127 // side], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_large_jpeg_decodes_at_reduced_scale_with_the_same_pixels():
    import io

    from lensflow.models.preprocess import draft

    pre = ImagePreprocess(size=96)
    data = _jpeg(640)
    reduced = draft(Image.open(io.BytesIO(data)), 96)
    assert min(reduced.size) >= 96 and reduced.size[0] < 640  # DCT-scaled, never below the model's side
    full = Image.open(io.BytesIO(data))
    full.load()  # already decoded: draft no longer applies
    assert draft(full, 96).size == (640, 640)
    fast, slow = pre.to_array(Image.open(io.BytesIO(data))), pre.to_array(full)
    assert fast.shape == slow.shape == (96, 96, 3)
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 2.0  # a smooth image: the same picture


def test_small_jpeg_and_png_are_not_drafted():
    import io

    from lensflow.models.preprocess import draft

    assert draft(Image.open(io.BytesIO(_jpeg(150))), 96).size == (150, 150)  # < 2x the side: full decode
    assert draft(Image.new("RGB", (640, 640)), 96).size == (640, 640)
    assert ImagePreprocess(96).fingerprint()["jpeg"] == "draft-decode"


def _product(side: int = 48) -> np.ndarray:
    """An asymmetric product shape (so a rotation shows): an L of red and blue on a mask."""
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[6:42, 8:18] = (200, 30, 30, 255)  # the upright bar
    rgba[32:42, 18:40] = (30, 60, 210, 255)  # the foot, to the right
    rgba[20:26, 26:32] = (240, 200, 20, 128)  # a half-transparent detail
    return rgba


def _with_hidden_colour(rgba: np.ndarray, colour) -> Image.Image:
    out = rgba.copy()
    out[rgba[..., 3] == 0, :3] = colour  # what a vendor's file keeps under fully transparent pixels
    return Image.fromarray(out, "RGBA")


def test_transparent_pixels_are_composited_onto_the_documented_background():
    from lensflow.models.preprocess import BACKGROUND

    pre = ImagePreprocess(size=48)
    rgba = _product()
    files = [_with_hidden_colour(rgba, c) for c in ((0, 0, 0), (255, 0, 255), (12, 240, 99))]
    arrays = [pre.to_array(im) for im in files]
    # the same product, whatever colour each file hides under its transparent pixels
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])
    # ...and exactly what the product looks like photographed on an opaque background of that colour
    opaque = Image.new("RGBA", (48, 48), (*BACKGROUND, 255))
    opaque.alpha_composite(Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(arrays[0], pre.to_array(opaque.convert("RGB")))
    assert tuple(arrays[0][0, 0]) == BACKGROUND
    # palette and grey+alpha files take the same road
    import io

    palette = Image.new("P", (48, 48), 0)
    palette.putpalette([255, 0, 255, 200, 30, 30])  # index 0: a magenta key colour, declared transparent
    palette.paste(1, (8, 6, 18, 42))
    buf = io.BytesIO()
    palette.save(buf, "PNG", transparency=0)
    for im in (Image.open(buf), files[1].convert("LA")):
        assert tuple(pre.to_array(im)[0, 0]) == BACKGROUND, im.mode


def _oriented_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """The bytes a phone writes: pixels stored turned, with the EXIF tag that turns them back."""
    import io

    stored = {
        6: upright.transpose(Image.Transpose.ROTATE_90),
        8: upright.transpose(Image.Transpose.ROTATE_270),
        3: upright.transpose(Image.Transpose.ROTATE_180),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG" if upright.mode == "RGBA" else "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_applied_before_preprocessing():
    import io

    pre = ImagePreprocess(size=48)
    upright = Image.fromarray(_product()[..., :3])
    want = pre.to_array(upright).astype(int)
    for orientation in (3, 6, 8):
        got = pre.to_array(Image.open(io.BytesIO(_oriented_jpeg(upright, orientation)))).astype(int)
        assert np.abs(got - want).mean() < 4, orientation  # JPEG noise only: not turned sideways
        turned = pre.to_array(
            Image.open(io.BytesIO(_oriented_jpeg(upright, orientation))).transpose(Image.Transpose.ROTATE_90)
        )
        assert np.abs(turned.astype(int) - want).mean() > 20  # (a sideways image really is that different)


def test_every_decoder_applies_orientation_and_alpha_the_same_way(tmp_path):
    """Catalog loading, training views and query uploads all see the same upright, composited pixels."""
    import io

    from lensflow.models.augment import ShopperAugment
    from lensflow.serving.search import decode_image
    from lensflow.tasks.helpers.images import CatalogImages

    pre = ImagePreprocess(size=48)
    upright = _with_hidden_colour(_product(), (255, 0, 255))
    data = _oriented_jpeg(upright, 6)
    (tmp_path / "p.png").write_bytes(data)
    want = pre.to_array(_with_hidden_colour(_product(), (0, 0, 0)))
    assert np.array_equal(CatalogImages(tmp_path, ["p.png"], pre)[0], want)
    assert np.array_equal(pre.to_array(decode_image(data, 10**6, 10**4, 48)), want)
    view = ShopperAugment(size=48, rotate=0, studio=1.0, tint=0, shade=0, blur=0, noise=0, jitter=0, jpeg=(95, 95))
    seen = np.asarray(view(Image.open(io.BytesIO(data)), view.rng("p.png", 1))).astype(int)
    plain = np.asarray(view(_with_hidden_colour(_product(), (0, 0, 0)), view.rng("p.png", 1))).astype(int)
    assert (
        np.abs(seen - plain).mean() < 6
    )  # the sideways file with a magenta hidden colour: upright, on white (JPEG noise only)
