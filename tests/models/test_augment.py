import numpy as np
from PIL import Image

from lensflow.models.augment import ShopperAugment


def product_on_black(size=28):
    img = np.zeros((size, size, 3), np.uint8)
    img[6:22, 9:19] = 200  # a light garment on a black studio background
    img[10:14, 12:16] = 10  # a dark print inside it (not background: not connected to the border)
    return Image.fromarray(img)


def test_same_key_and_seed_give_the_same_photo_other_seeds_differ():
    aug = ShopperAugment()
    im = product_on_black()
    a = np.asarray(aug(im, aug.rng("images/p1.png", 7)))
    b = np.asarray(aug(im, aug.rng("images/p1.png", 7)))
    c = np.asarray(aug(im, aug.rng("images/p1.png", 8)))
    assert a.shape == (aug.size, aug.size, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_product_mask_keeps_inner_dark_parts():
    aug = ShopperAugment()
    rgb = np.asarray(product_on_black(), dtype=np.float32)
    mask = aug._product_mask(rgb, (0, 0, 0))
    assert mask[12, 13] and mask[8, 10] and not mask[0, 0] and not mask[27, 5]


def test_background_is_replaced_when_asked():
    im = product_on_black()
    plain = dict(
        tint=0.0,
        shade=0.0,
        blur=0.0,
        noise=0.0,
        rotate=0.0,
        fill=(1.0, 1.0),
        margin=(0.0, 0.0),
        jitter=0.0,
        jpeg=(95, 95),
    )
    always = ShopperAugment(studio=0.0, **plain)
    never = ShopperAugment(studio=1.0, **plain)
    corner = lambda aug: np.asarray(aug(im, aug.rng("k", 0)))[:10, :10].mean()  # noqa: E731
    assert corner(never) < 5 and corner(always) > 5
    assert always.fingerprint() != never.fingerprint()


def test_the_view_is_cropped_around_the_product_like_the_localizer():
    """However small and wherever the product lands in the scene, the view is the square around it."""
    im = product_on_black()
    aug = ShopperAugment(
        fill=(0.3, 0.3),
        studio=1.0,
        tint=0.0,
        shade=0.0,
        blur=0.0,
        noise=0.0,
        rotate=0.0,
        margin=(0.0, 0.0),
        jitter=0.0,
        jpeg=(95, 95),
    )
    for seed in range(5):
        view = np.asarray(aug(im, aug.rng("k", seed))).mean(axis=-1)
        rows = np.flatnonzero((view > 100).any(axis=1))
        assert rows[0] <= 8 and rows[-1] >= aug.size - 9  # the garment (taller than wide) spans the view's height
