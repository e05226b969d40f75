"""Colour names: the pixel table agrees with the exact rule, and photos get the colours a person would name."""

import numpy as np
from PIL import Image

from lensflow.models.colours import NAMES, colour_name, colour_tags, dominant_colours, name_pixels, pixel_names


def product(colour, backdrop=(255, 255, 255), second=None, size=90, seed=0):
    img = np.full((size, size, 3), backdrop, np.float32)
    img[15:75, 25:65] = colour
    if second is not None:
        img[45:75, 25:65] = second
    noise = np.random.default_rng(seed).normal(0, 5, img.shape)
    return Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8))


def test_the_lookup_table_names_pixels_as_the_exact_rule_does():
    px = np.random.default_rng(0).integers(0, 256, (20000, 3)).astype(np.float64)
    assert (pixel_names(px) == name_pixels(px)).mean() > 0.97  # they differ only next to a boundary
    anchors = {"red": (200, 30, 30), "navy": (20, 30, 90), "beige": (230, 210, 170), "teal": (20, 150, 150)}
    assert [NAMES[i] for i in pixel_names(np.array(list(anchors.values())))] == list(anchors)
    assert {n: colour_name(rgb) for n, rgb in anchors.items()} == {n: n for n in anchors}


def test_catalog_tags_name_the_product_not_the_backdrop():
    photos = [
        product((40, 60, 210)),  # blue on white
        product((200, 30, 30), backdrop=(10, 10, 10)),  # red on black
        product((240, 140, 30), second=(30, 170, 60)),  # orange over green
        Image.new("RGB", (40, 40), (128, 128, 128)),  # nothing stands out: the photo is the product's colour
        product((250, 250, 250), backdrop=(20, 30, 90)),  # a white product on navy
    ]
    tags = colour_tags(photos)
    assert tags[:2] == ["blue", "red"] and set(tags[2].split()) == {"orange", "green"}
    assert tags[3:] == ["grey", "white"]
    assert [c["name"] for c in dominant_colours(photos[0])] == ["blue"]  # /describe names what the index tags
    assert dominant_colours(photos[0])[0]["rgb"][2] > 180
