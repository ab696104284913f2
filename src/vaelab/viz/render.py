"""The named figures that the LatentViz callback and vaelab-viz draw from a fixed set of images.

`render_figures` encodes the images once and calls one plotting function per requested figure;
each figure's options (grid sizes, sample counts, ...) come from `callbacks/latent_viz.yaml`.
"""

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vaelab.viz.grids import (
    INTERPOLATIONS,
    check_latent_dims,
    interpolation_grid,
    latent_manifold,
    latent_traversal_grid,
    prior_sample_grid,
    reconstruction_grid,
)
from vaelab.viz.images import figure_to_image
from vaelab.viz.plots import PROJECTIONS, kl_per_dim_chart, latent_scatter


@dataclass
class Encoded:
    """Images [N, C, H, W], labels [N] (or None) and their posterior parameters [N, D]."""

    images: torch.Tensor
    labels: torch.Tensor | None
    mu: torch.Tensor
    logvar: torch.Tensor


def _reconstructions(model, data: Encoded, num_images: int, ncol: int, padding: int):
    return reconstruction_grid(model, data.images[:num_images], ncol, padding)


def _prior_samples(model, data: Encoded, num_samples: int, ncol: int, seed: int, padding: int):
    return prior_sample_grid(model, num_samples, ncol, seed, padding)


def _latent_scatter(model, data: Encoded, num_points: int, method: str, seed: int,
                    figsize: Sequence[float], dpi: int, point_size: float):
    labels = None if data.labels is None else data.labels[:num_points]
    return figure_to_image(latent_scatter(data.mu[:num_points], labels, method, seed, figsize,
                                          dpi, point_size))


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


#: options that take one of a few values
CHOICES = {
    ("latent_scatter", "method"): PROJECTIONS,
    ("interpolation", "method"): INTERPOLATIONS,
    ("latent_traversal", "base"): ("image", "zero"),
}


def check_figures(figures: Sequence[str], options: Mapping[str, Mapping],
                  latent_dim: int) -> None:
    """Raise a ValueError naming any unknown figure, missing or unknown option, or bad value,
    so a mistake shows before training rather than at the first drawing."""
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown} in callbacks.latent_viz.figures "
                         "(vaelab-viz: figures=); "
                         f"choose from {list(FIGURES)}")
    for name in figures:
        params = list(inspect.signature(FIGURES[name]).parameters)[2:]
        given = set(options.get(name) or {})
        if given != set(params):
            raise ValueError(
                f"callbacks.latent_viz.{name} needs exactly the options {params}; "
                f"missing {sorted(set(params) - given)}, unknown {sorted(given - set(params))}"
            )
    for (name, option), allowed in CHOICES.items():
        if name in figures and options[name][option] not in allowed:
            raise ValueError(f"callbacks.latent_viz.{name}.{option} must be one of {allowed}, "
                             f"got {options[name][option]!r}")
    if "latent_manifold" in figures and latent_dim >= 2:
        check_latent_dims(options["latent_manifold"]["dims"], latent_dim,
                          "latent_manifold.dims", pair=True)
    if "latent_traversal" in figures and options["latent_traversal"]["dims"] is not None:
        check_latent_dims(options["latent_traversal"]["dims"], latent_dim,
                          "latent_traversal.dims")


def drawable_figures(figures: Sequence[str], latent_dim: int) -> list[str]:
    """The figures this latent size allows; warns about the ones it has to leave out."""
    if latent_dim >= 2:
        return list(figures)
    skipped = [f for f in figures if f in PLANAR]
    if skipped:
        warnings.warn(f"latent_dim={latent_dim}: {skipped} need at least 2 latent dimensions "
                      "and are not drawn", stacklevel=2)
    return [f for f in figures if f not in PLANAR]


def images_needed(figures: Sequence[str], options: Mapping[str, Mapping]) -> int:
    """How many fixed images the figures use (at least one, for the traversal's base)."""
    counts = {
        "reconstructions": lambda o: o["num_images"],
        "latent_scatter": lambda o: o["num_points"],
        "kl_per_dim": lambda o: o["num_points"],
        "interpolation": lambda o: 2 * o["num_pairs"],
    }
    return max([1] + [counts[f](options[f]) for f in figures if f in counts])


@torch.no_grad()
def encode_images(model: nn.Module, images: torch.Tensor,
                  batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mu, logvar), each [N, D], encoded `batch_size` images at a time."""
    parts = [model.encode(chunk) for chunk in images.split(batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def render_figures(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                   figures: Sequence[str], options: Mapping[str, Mapping],
                   batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """{figure name: image float [3, H, W]} for images [N, C, H, W] on the model's device."""
    mu, logvar = encode_images(model, images, batch_size)
    data = Encoded(images, labels, mu, logvar)
    return {name: FIGURES[name](model, data, **options[name]) for name in figures}
