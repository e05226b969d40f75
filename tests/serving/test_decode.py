"""Photo decoding of the search service (plain function, no server)."""

import io

import numpy as np
import pytest
from PIL import Image

from lensflow.serving.search import BadQuery, decode_image


def _jpeg(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_a_large_jpeg_is_decoded_at_the_models_scale_only_when_asked():
    data = _jpeg(800)
    assert decode_image(data, 10**8, 10**4).size == (800, 800)
    small = decode_image(data, 10**8, 10**4, model_side=96)
    assert small.mode == "RGB" and 96 <= min(small.size) < 800


def test_limits_are_checked_on_the_header_before_any_decoding():
    with pytest.raises(BadQuery, match="limits are 500 px per side") as err:
        decode_image(_jpeg(800), 10**8, 500, model_side=96)
    assert err.value.status == 413


def test_a_pixel_box_is_read_in_the_photo_as_sent_even_when_decoded_smaller():
    """A large JPEG decodes at reduced scale (draft); a box in the sender's pixels still names the same region."""
    import io

    from PIL import Image

    from lensflow.serving.search import decode_image, photo_box

    buf = io.BytesIO()
    Image.new("RGB", (1600, 800), (200, 30, 30)).save(buf, "JPEG")
    image = decode_image(buf.getvalue(), 10**8, 10**5, model_side=96)
    w, h = image.size
    assert w < 1600 and w == 2 * h  # decoded at reduced scale
    assert photo_box(image, "800,0,1600,800") == (w / 2, 0, w, h)
    assert photo_box(image, "0.5,0,1,1") == (w / 2, 0, w, h)  # relative boxes do not depend on the scale
    # a phone photo stored sideways (EXIF orientation 6): the box is in the upright photo the shopper sees
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (1600, 800), (200, 30, 30)).save(buf, "JPEG", exif=exif.tobytes())
    image = decode_image(buf.getvalue(), 10**8, 10**5, model_side=96)
    w, h = image.size
    assert w < 800 and h == 2 * w  # upright, reduced
    assert photo_box(image, "0,800,800,1600") == (0, h / 2, w, h)
