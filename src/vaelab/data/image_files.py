"""Image files -> uint8 [C, H, W] arrays: finding them, colour modes, centre crop and resize."""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
#: Folders never searched for images: the default cache folder.
SKIPPED_DIRS = ("vaelab_cache",)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class UnreadableImageError(ValueError):
    """A file that PIL cannot decode (corrupt, truncated, or not an image)."""


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` at any depth, sorted; hidden files and folders are left out
    (macOS leaves unreadable `._name.jpg` files), and so is anything but a regular file (a
    named pipe called x.png would block its reader for ever)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS]
        found += [Path(dirpath) / name for name in filenames
                  if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)
                  and (Path(dirpath) / name).is_file()]
    return sorted(found)


def parse_crop(crop_size: int | Sequence[int] | str | None) -> tuple[int, int] | str | None:
    """data.crop_size -> (h, w), "square" (the largest central square) or None (no crop)."""
    if crop_size is None or crop_size == "square":
        return crop_size
    if isinstance(crop_size, int):
        return (crop_size, crop_size)
    if isinstance(crop_size, Sequence) and not isinstance(crop_size, str) and len(crop_size) == 2:
        return (int(crop_size[0]), int(crop_size[1]))
    raise ValueError(f"data.crop_size={crop_size!r}: give an int, [h, w], 'square' or null")


def read_image(path: Path) -> Image.Image:
    """The file's first frame, decoded and turned upright by its EXIF orientation."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not later
            return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"{path} is not a readable image ({err})") from err


def flatten(image: Image.Image, background: Sequence[int]) -> Image.Image:
    """An "RGB" or "L" image: transparency composited over `background` (RGB), palettes
    resolved, 16-bit grey scaled to 8 bits."""
    if image.mode in _SIXTEEN_BIT:
        grey = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha)
        return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    return image.convert("L" if image.mode in ("1", "L") else "RGB")


@dataclass(frozen=True)
class ImagePreprocess:
    """One image file -> uint8 [C, H, W]: flatten to grey (C=1) or RGB (C=3), centre crop
    (`crop`: (h, w), "square" or None), resize to (H, W) with the PIL filter `resample`."""

    image_shape: tuple[int, int, int]
    crop: tuple[int, int] | str | None = None
    resample: str = "bicubic"
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self):
        if len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3):
            raise ValueError(f"data.image_shape={list(self.image_shape)} must be [C, H, W] with "
                             "C = 1 (grey) or 3 (RGB)")
        if self.resample not in RESAMPLE:
            raise ValueError(f"data.resample must be one of {sorted(RESAMPLE)}, "
                             f"got {self.resample!r}")
        if len(self.background) != 3 or not all(0 <= v <= 255 for v in self.background):
            raise ValueError(f"data.background={list(self.background)} must be [r, g, b] in "
                             "0..255")

    def params(self) -> dict:
        """Everything that changes the output, for a cache manifest."""
        crop = list(self.crop) if isinstance(self.crop, tuple) else self.crop
        return {"image_shape": list(self.image_shape), "crop": crop,
                "resample": self.resample, "background": list(self.background)}

    def tag(self) -> str:
        """A readable summary for file names, e.g. "64x64-crop148x148-bicubic"."""
        _, h, w = self.image_shape
        crop = {None: "nocrop", "square": "cropsquare"}.get(self.crop) if not isinstance(
            self.crop, tuple) else f"crop{self.crop[0]}x{self.crop[1]}"
        return f"{h}x{w}-{crop}-{self.resample}"

    def center_crop(self, image: Image.Image, path: Path) -> Image.Image:
        w, h = image.size
        if self.crop is None:
            return image
        ch, cw = (min(h, w),) * 2 if self.crop == "square" else self.crop
        if ch > h or cw > w:
            raise ValueError(f"{path} is {h}x{w}, smaller than data.crop_size={list(self.crop)}: "
                             "lower data.crop_size, or use data.crop_size=square")
        top, left = round((h - ch) / 2), round((w - cw) / 2)
        return image.crop((left, top, left + cw, top + ch))

    def __call__(self, path: Path) -> np.ndarray:
        """uint8 [C, H, W]; raises UnreadableImageError for a file PIL cannot decode."""
        channels, h, w = self.image_shape
        image = read_image(path)
        try:
            image = flatten(image, self.background).convert("L" if channels == 1 else "RGB")
        except (ValueError, OSError) as err:
            raise UnreadableImageError(f"{path} is not a readable image: its colour mode "
                                       f"{image.mode} cannot be converted ({err})") from err
        image = self.center_crop(image, path)
        if image.size != (w, h):
            image = image.resize((w, h), RESAMPLE[self.resample])
        array = np.asarray(image, dtype=np.uint8)
        return array[None] if channels == 1 else array.transpose(2, 0, 1)
