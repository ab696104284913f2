"""Turning figures into image tensors and image tensors into PNG files."""

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import save_image

from vaelab.atomic import atomic_path


def figure_to_image(fig: Figure) -> torch.Tensor:
    """Rasterise a matplotlib figure with Agg; -> float [3, H, W] in [0, 1]."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """float [C, H, W] in [0, 1] -> uint8 [H, W, C], the layout PIL, W&B and MLflow read."""
    pixels = image.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write float [C, H, W] in [0, 1] to `path` as PNG (torchvision's save_image), creating
    its folder; whole or not at all (a kill mid-write leaves no truncated PNG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_image(image.detach().cpu(), tmp, format="png")
    return path


def save_figure(fig: Figure, path: str | Path, **options) -> Path:
    """fig.savefig to `path` (its format from the suffix), whole or not at all."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **options)
    return path
