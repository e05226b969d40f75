"""The attribute describer's parts (plain functions, no server)."""

import numpy as np
from PIL import Image

from lensflow.models.colours import colour_name, dominant_colours
from lensflow.serving.describe import category_scores, suggest


def test_category_vote_is_similarity_weighted():
    rows = [{"category": "Bag", "score": 0.9}, {"category": "Coat", "score": 0.7}, {"category": "Coat", "score": 0.7}]
    vote = category_scores(rows)
    assert vote[0]["category"] == "Bag" and abs(sum(v["score"] for v in vote) - 1) < 1e-3  # near beats many
    assert category_scores([]) == []


def test_colour_names_of_known_colours():
    known = {
        "red": (200, 30, 30),
        "green": (30, 170, 60),
        "blue": (40, 60, 210),
        "black": (15, 15, 15),
        "white": (250, 250, 250),
        "grey": (128, 128, 128),
        "brown": (120, 70, 30),
        "navy": (20, 30, 90),
        "yellow": (230, 220, 40),
        "pink": (240, 120, 170),
        "purple": (150, 60, 180),
        "orange": (240, 140, 30),
    }
    assert {name: colour_name(rgb) for name, rgb in known.items()} == {name: name for name in known}


def test_dominant_colours_leave_the_backdrop_out():
    rng = np.random.default_rng(0)
    for backdrop in ((255, 255, 255), (10, 10, 10)):
        img = np.full((120, 120, 3), backdrop, np.float32)
        img[20:100, 30:90] = (200, 30, 30)  # a red product
        img[60:100, 30:90] = (40, 60, 210)  # with a blue lower half
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        colours = dominant_colours(Image.fromarray(img))
        assert [c["name"] for c in colours] == ["red", "blue"] or [c["name"] for c in colours] == ["blue", "red"]
        assert abs(colours[0]["share"] - 0.5) < 0.1


def test_suggested_title_names_the_colour_and_category():
    title, text = suggest("T-shirt/top", [{"name": "navy", "share": 0.8}], ["Classic tee", "Everyday top"])
    assert title == "Navy t-shirt or top" and text.startswith("A navy t-shirt or top.") and "Classic tee" in text
