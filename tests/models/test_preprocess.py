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
