"""dSprites-like sprites rendered by vaelab (no download): white shapes on black, one image per
combination of shape, scale, orientation, pos_x and pos_y.

Each shape x scale x orientation mask is rendered once and copied to every position by slicing,
so the default 46,080 images take about a second; the result is cached as a memory-mapped .npy.
As in dSprites, orientation is not identifiable for symmetric shapes: a square looks the same
every 90 degrees and an ellipse every 180, so those images repeat along the orientation factor.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from vaelab.data.cache import cached_array, keyed_path
from vaelab.data.factors import FactorData, FactorDataModule

FACTORS = ["shape", "scale", "orientation", "pos_x", "pos_y"]
DEFAULT_SHAPES = ("square", "ellipse", "heart")
#: Bumped whenever rendering would give other pixels for the same parameters.
RENDER_FORMAT = 1
#: sub-pixel samples per side when anti_alias is on: edge pixels get 1/16-steps of grey
SUPERSAMPLE = 4
#: the heart curve (x^2 + y^2 - 1)^3 = x^2 y^3 spans y in [-1, 1.236]: its centre and the
#: radius around it that fits it in the unit disk, so it turns inside the box like the others
HEART_CENTRE_Y, HEART_RADIUS = 0.118, 1.34


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(abs(u), abs(v)) <= 1 / np.sqrt(2)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + (2 * v) ** 2 <= 1


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = HEART_RADIUS * u, HEART_CENTRE_Y - HEART_RADIUS * v  # y up, v (rows) down
    return (x**2 + y**2 - 1) ** 3 <= x**2 * y**3


#: shape -> inside(u, v): bool, in coordinates where the shape at scale 1 fits the unit disk
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "square": _square, "ellipse": _ellipse, "heart": _heart}


def sprite_masks(shapes: Sequence[str], scales: np.ndarray, angles: np.ndarray, box: int,
                 anti_alias: bool) -> np.ndarray:
    """uint8 [shapes, scales, angles, box, box]: each shape scaled and turned counter-clockwise
    (as displayed) about the box centre, 255 inside; grey edge coverage with anti_alias."""
    samples = box * (SUPERSAMPLE if anti_alias else 1)
    t = (np.arange(samples) + 0.5) / samples * 2 - 1  # sample centres across [-1, 1]
    x, y = t[None, None, :], t[None, :, None]  # columns right, rows down
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    # Sampling the shape at points turned by -angle draws it turned by +angle.
    u = (cos * x - sin * y)[None] / scales[:, None, None, None]
    v = (sin * x + cos * y)[None] / scales[:, None, None, None]
    inside = np.stack([SHAPES[name](u, v) for name in shapes])
    shape = (*inside.shape[:3], box, samples // box, box, samples // box)
    coverage = inside.reshape(shape).mean(axis=(4, 6))
    return np.round(coverage * 255).astype(np.uint8)


def place_masks(masks: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Copy masks [M, B, B] to every (pos_x, pos_y) of `offsets` (top-left pixel of the box):
    out [M, P(pos_x), P(pos_y), 1, H, W], zero elsewhere."""
    box = masks.shape[-1]
    for j, left in enumerate(offsets):
        for i, top in enumerate(offsets):
            out[:, j, i, 0, top:top + box, left:left + box] = masks


class SpritesDataModule(FactorDataModule):
    """Rendered sprites with factors shape, scale, orientation, pos_x, pos_y (images uint8
    [N, 1, S, S]); the dSprites grid is shapes 3, scales 6, orientations 40, positions 32."""

    @classmethod
    def expected_factor_sizes(cls, options: dict) -> dict[str, int]:
        positions = options.get("positions", 16)
        sizes = [len(options.get("shapes", DEFAULT_SHAPES)), options.get("scales", 6),
                 options.get("orientations", 10), positions, positions]
        return dict(zip(FACTORS, sizes))

    def __init__(self, cache_dir: str, image_size: int = 64,
                 shapes: Sequence[str] = DEFAULT_SHAPES, scales: int = 6,
                 scale_range: Sequence[float] = (0.5, 1.0), orientations: int = 10,
                 positions: int = 16, sprite_size: float = 0.5, anti_alias: bool = False,
                 val_size: int | float = 2000, test_size: int | float = 2000, **kwargs):
        super().__init__(val_size=val_size, test_size=test_size, **kwargs)
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes or len(set(shapes)) != len(shapes):
            raise ValueError(f"data.shapes={list(shapes)} must list distinct shapes of "
                             f"{list(SHAPES)}")
        low, high = scale_range
        if not 0 < low <= high <= 1:
            raise ValueError(f"data.scale_range={list(scale_range)} must satisfy "
                             "0 < low <= high <= 1 (1: the sprite fills its box)")
        if min(scales, orientations, positions) < 1:
            raise ValueError("data.scales, data.orientations and data.positions must be >= 1")
        self.box = round(sprite_size * image_size)
        offsets = np.round(np.linspace(0, image_size - self.box, positions)).astype(int)
        if not 1 <= self.box <= image_size or len(np.unique(offsets)) != positions:
            raise ValueError(
                f"data.positions={positions} needs that many distinct pixel offsets of a box of "
                f"data.sprite_size={sprite_size} x data.image_size={image_size} = {self.box} "
                f"pixels, and there are {image_size - self.box + 1}: lower data.positions or "
                "data.sprite_size (0 < sprite_size <= 1), or raise data.image_size"
            )
        self.cache_dir = cache_dir
        self.image_size = image_size
        self.shapes = list(shapes)
        self.scales = np.linspace(low, high, scales)
        self.angles = np.linspace(0, 2 * np.pi, orientations, endpoint=False)
        self.offsets = offsets
        self.anti_alias = anti_alias

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Classes of shape, scale, orientation, pos_x, pos_y."""
        positions = len(self.offsets)
        return len(self.shapes), len(self.scales), len(self.angles), positions, positions

    def params(self) -> dict:
        """Everything the pixels depend on: what the cache's manifest records."""
        return {"format": RENDER_FORMAT, "image_size": self.image_size, "shapes": self.shapes,
                "scales": self.scales.tolist(), "angles": self.angles.tolist(),
                "offsets": self.offsets.tolist(), "box": self.box,
                "anti_alias": self.anti_alias}

    def cache_path(self) -> Path:
        """One file per grid (named by a hash of its parameters), so sweeps over grids can
        share the folder."""
        return keyed_path(Path(self.cache_dir).expanduser(), "sprites", self.params())

    def render(self, out: np.ndarray) -> None:
        """Fill out uint8 [N, 1, S, S] with the grid, in mixed-radix order (pos_y fastest)."""
        masks = sprite_masks(self.shapes, self.scales, self.angles, self.box, self.anti_alias)
        positions = len(self.offsets)
        grid = out.reshape(-1, positions, positions, 1, self.image_size, self.image_size)
        place_masks(masks.reshape(-1, self.box, self.box), self.offsets, grid)

    def _images(self) -> np.ndarray:
        shape = (int(np.prod(self.grid_shape)), 1, self.image_size, self.image_size)
        return cached_array(self.cache_path(), self.params(), shape, self.render,
                            "sprites").array

    def prepare_data(self) -> None:
        # One process per node renders, so DDP ranks never write the cache together.
        self._images()

    def load_factor_data(self) -> FactorData:
        factors = np.indices(self.grid_shape).reshape(len(FACTORS), -1).T
        return FactorData(torch.from_numpy(self._images()), torch.from_numpy(factors).long(),
                          list(FACTORS), {"shape": self.shapes})
