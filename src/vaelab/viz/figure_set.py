"""What to draw: the named latent-space figures, drawn from a fixed set of a split's images.

`FigureSet` is used by the LatentViz callback (which decides when and where to send them) and
by vaelab-viz. Its options are a Hydra structured config (`vaelab.schemas.FigureSetConfig`):
unknown keys, wrong types and invalid choices stop at compose time, before anything runs.
"""

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from omegaconf import OmegaConf
from torch.nn import functional as F

from vaelab.models.latents import encode_images
from vaelab.viz.grids import (
    check_latent_dims,
    interpolation_grid,
    latent_manifold,
    latent_traversal_grid,
    prior_sample_grid,
    reconstruction_grid,
)
from vaelab.viz.images import figure_to_image
from vaelab.viz.plots import kl_per_dim_chart, latent_scatter


# -- drawing ---------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Images [N, C, H, W], class ids [N] (or None) and their posterior parameters [N, D]."""

    images: torch.Tensor
    labels: torch.Tensor | None
    mu: torch.Tensor
    logvar: torch.Tensor


def _reconstructions(model, data: Encoded, num_images: int, ncol: int, padding: int):
    return reconstruction_grid(model, data.images[:num_images], ncol, padding)


def _prior_samples(model, data: Encoded, num_samples: int, ncol: int, seed: int, padding: int):
    return prior_sample_grid(model, num_samples, ncol, seed, padding)


def _latent_scatter(model, data: Encoded, num_points: int, method: str, seed: int,
                    figsize: Sequence[float], dpi: int, point_size: float, names=None):
    labels = None if data.labels is None else data.labels[:num_points]
    return figure_to_image(latent_scatter(data.mu[:num_points], labels, method, seed, figsize,
                                          dpi, point_size, names))


def _latent_manifold(model, data: Encoded, grid_size: int, dims: Sequence[int],
                     quantiles: Sequence[float], padding: int):
    return latent_manifold(model, grid_size, dims, quantiles, padding)


def _interpolation(model, data: Encoded, num_pairs: int, steps: int, method: str, padding: int):
    # Consecutive images make the pairs: (0, 1), (2, 3), ...
    pairs = data.images[: 2 * min(num_pairs, len(data.images) // 2)]
    return interpolation_grid(model, pairs[0::2], pairs[1::2], steps, method, padding)


def _latent_traversal(model, data: Encoded, dims: Sequence[int] | None, limits: Sequence[float],
                      steps: int, base: str, padding: int):
    z = data.mu[0] if base == "image" else torch.zeros_like(data.mu[0])
    return latent_traversal_grid(model, z, dims, limits, steps, padding)


def _kl_per_dim(model, data: Encoded, num_points: int, collapsed_below: float,
                figsize: Sequence[float], dpi: int):
    return figure_to_image(kl_per_dim_chart(data.mu[:num_points], data.logvar[:num_points],
                                            collapsed_below, figsize, dpi))


#: name -> function(model, encoded images, **options) -> image float [3, H, W].
FIGURES: dict[str, Callable[..., torch.Tensor]] = {
    "reconstructions": _reconstructions,
    "prior_samples": _prior_samples,
    "latent_scatter": _latent_scatter,
    "latent_manifold": _latent_manifold,
    "interpolation": _interpolation,
    "latent_traversal": _latent_traversal,
    "kl_per_dim": _kl_per_dim,
}
#: figures drawn in a latent plane, which a 1-D latent space does not have
PLANAR = ("latent_scatter", "latent_manifold")
#: how many fixed images each figure uses, from its options
IMAGES_NEEDED = {
    "reconstructions": lambda o: o["num_images"],
    "latent_scatter": lambda o: o["num_points"],
    "kl_per_dim": lambda o: o["num_points"],
    "interpolation": lambda o: 2 * o["num_pairs"],
}


def _plain(value):
    """Config values as plain Python: enums by name, DictConfig/ListConfig as dict/list."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, enum_to_str=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.name if isinstance(value, Enum) else value


def upscale(image: torch.Tensor, min_width: int) -> torch.Tensor:
    """Nearest-neighbour upscaling by a whole factor to at least `min_width` pixels wide, so a
    grid of 8x8 digits is not an 82-pixel thumbnail; [3, H, W] -> [3, kH, kW]."""
    factor = math.ceil(min_width / image.shape[-1]) if min_width else 1
    if factor <= 1:
        return image
    return F.interpolate(image.unsqueeze(0), scale_factor=factor, mode="nearest").squeeze(0)


class FigureSet:
    """The figures `draw`, drawn from the first images of `split` (see FigureSetConfig)."""

    def __init__(self, draw: Sequence[str], split: str = "val", batch_size: int = 1000,
                 min_width: int = 400, **options: Mapping):
        self.draw = [_plain(name) for name in draw]
        self.split, self.batch_size, self.min_width = split, batch_size, min_width
        self.options = {name: _plain(options.get(name, {})) for name in FIGURES}
        self._images: tuple[torch.Tensor, torch.Tensor] | None = None

    def select(self, latent_dim: int) -> list[str]:
        """The figures this latent size allows (warning about the others); bad latent dims in
        the options stop here, before training."""
        if "latent_manifold" in self.draw and latent_dim >= 2:
            check_latent_dims(self.options["latent_manifold"]["dims"], latent_dim,
                              "latent_manifold.dims", pair=True)
        if "latent_traversal" in self.draw and self.options["latent_traversal"]["dims"]:
            check_latent_dims(self.options["latent_traversal"]["dims"], latent_dim,
                              "latent_traversal.dims")
        if latent_dim >= 2:
            return list(self.draw)
        skipped = [f for f in self.draw if f in PLANAR]
        if skipped:
            warnings.warn(f"latent_dim={latent_dim}: {skipped} need at least 2 latent "
                          "dimensions and are not drawn", stacklevel=2)
        return [f for f in self.draw if f not in PLANAR]

    def fixed_images(self, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
        """The first images of the split as model input [n, C, H, W], with class ids [n]."""
        if self._images is None:
            n = max([1] + [IMAGES_NEEDED[f](self.options[f]) for f in self.draw
                           if f in IMAGES_NEEDED])
            images = datamodule.images(self.split)[:n]
            labels = datamodule.class_labels(datamodule.labels(self.split)[:n])
            self._images = (datamodule.model_input(images.cpu()), labels.cpu())
        return self._images

    @torch.no_grad()
    def render(self, model, datamodule, figures: Sequence[str] | None = None
               ) -> dict[str, torch.Tensor]:
        """{name: image float [3, H, W]} of `figures` (default: what `select` allows), drawn
        in eval mode on the model's device."""
        figures = self.select(model.latent_dim) if figures is None else figures
        images, labels = (t.to(model.device) for t in self.fixed_images(datamodule))
        was_training = model.training
        model.eval()
        try:
            mu, logvar = encode_images(model, images, self.batch_size)
            data = Encoded(images, labels, mu, logvar)
            options = {**self.options, "latent_scatter": {
                **self.options["latent_scatter"], "names": datamodule.class_names}}
            return {name: upscale(FIGURES[name](model, data, **options[name]).cpu(),
                                  self.min_width)
                    for name in figures}
        finally:
            model.train(was_training)
