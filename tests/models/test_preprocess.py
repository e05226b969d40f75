import numpy as np
from PIL import Image

from models.preprocess import ImagePreprocess


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

    from models.preprocess import draft

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

    from models.preprocess import draft

    assert draft(Image.open(io.BytesIO(_jpeg(150))), 96).size == (150, 150)  # < 2x the side: full decode
    assert draft(Image.new("RGB", (640, 640)), 96).size == (640, 640)
    assert ImagePreprocess(96).fingerprint()["jpeg"] == "draft-decode"
