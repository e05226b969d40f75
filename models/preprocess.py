"""Image preprocessing shared by every image tower: upright RGB, resize shorter side, centre crop, scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

# Transparent pixels are composited onto this colour wherever an image is decoded (catalog, training views,
# index, queries): white, the usual e-commerce studio background. Without it each vendor's hidden colour
# under the alpha channel would show, and one product would look different on every file.
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class ImagePreprocess:
    size: int = 96
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1]
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """One PIL image -> uint8 HWC array of size x size (resize shorter side, centre crop)."""
        image = to_rgb(draft(image, self.size))
        w, h = image.size
        scale = self.size / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        if (nw, nh) != (self.size, self.size):
            image = image.crop((left, top, left + self.size, top + self.size))
        return np.asarray(image, dtype=np.uint8)

    def to_tensor(self, arrays: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> normalised float32 [N, 3, H, W]."""
        x = torch.from_numpy(np.ascontiguousarray(np.stack(arrays) if isinstance(arrays, list) else arrays))
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.to_tensor([self.to_array(im) for im in images])

    def fingerprint(self) -> dict:
        return {"resize": "shorter-side-bicubic+centre-crop", "jpeg": "draft-decode", "decode": DECODE, **asdict(self)}


def draft(image: Image.Image, side: int) -> Image.Image:
    """Let a not-yet-decoded JPEG decode at 1/2, 1/4 or 1/8 scale (DCT scaling) while both sides stay
    >= `side`: a 640 px photo for a 96 px model decodes in 0.63 ms instead of 4.6 ms (measured). Other
    images are left as they are."""
    if image.format == "JPEG" and min(image.size) >= 2 * side:
        image.draft("RGB", (side, side))
    return image


# part of the tower fingerprint (feature cache key)
DECODE = f"exif-upright+alpha-over-{'#{:02x}{:02x}{:02x}'.format(*BACKGROUND)}"


def to_rgb(image: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """The RGB pixels a viewer shows: the EXIF orientation applied (phone photos are stored sideways
    with a tag) and transparency composited onto `background` (converting RGBA straight to RGB would
    expose whatever colour the file keeps under transparent pixels). Call `draft` first, if at all."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
            image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored, rather than no image at all
        pass
    if has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return image.convert("RGB")  # always a new, loaded image: callers may close the file they opened


def has_alpha(image: Image.Image) -> bool:
    """Whether the file has transparent pixels to composite: an alpha band or a transparent colour/palette entry."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
