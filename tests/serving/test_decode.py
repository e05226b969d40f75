"""Photo decoding of the search service (plain function, no server)."""

import io

import numpy as np
import pytest
from PIL import Image

from serving.search import BadQuery, decode_image


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
