"""Decoded image grids: reconstructions, prior samples, manifold, interpolations, traversals.

Every function takes a VAE (anything with `encode`, `decode` and `likelihood.mean`) and tensors,
runs it without gradients, and returns one make_grid image, float [3, H, W] in [0, 1].
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Normal
from torchvision.utils import make_grid

from vaelab.models.latents import decode_means

#: Grid lines between tiles are white, so dark-background digits stay apart.
PAD_VALUE = 1.0
INTERPOLATIONS = ("linear", "spherical")


def _grid(images: torch.Tensor, ncol: int, padding: int) -> torch.Tensor:
    return make_grid(images.float().cpu(), nrow=ncol, padding=padding, pad_value=PAD_VALUE)


@torch.no_grad()
def reconstruction_grid(model: nn.Module, images: torch.Tensor, ncol: int = 8,
                        padding: int = 2) -> torch.Tensor:
    """Rows of `ncol` inputs, each row followed by their reconstructions; images [N, C, H, W]."""
    recon = model.reconstruct(images)
    rows = math.ceil(len(images) / ncol)
    blank = rows * ncol - len(images)
    if blank:
        pad = images.new_zeros(blank, *images.shape[1:])
        images, recon = torch.cat([images, pad]), torch.cat([recon, pad])
    pairs = torch.stack([images.unflatten(0, (rows, ncol)), recon.unflatten(0, (rows, ncol))], 1)
    return _grid(pairs.flatten(0, 2), ncol, padding)


@torch.no_grad()
def prior_sample_grid(model: nn.Module, num_samples: int = 64, ncol: int = 8, seed: int = 0,
                      padding: int = 2) -> torch.Tensor:
    """Decoded z ~ N(0, I), drawn from a generator seeded with `seed` so epochs compare."""
    samples = model.sample(num_samples, generator=torch.Generator().manual_seed(seed))
    return _grid(samples, ncol, padding)


def manifold_values(grid_size: int, quantiles: Sequence[float] = (0.05, 0.95)) -> torch.Tensor:
    """Latent values evenly spaced in prior probability: the standard normal's inverse CDF at
    linspace(q0, q1, n); -> float64 [n]."""
    low, high = quantiles
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"manifold quantiles must satisfy 0 < low < high < 1, got {quantiles}")
    probabilities = torch.linspace(low, high, grid_size, dtype=torch.float64)
    return Normal(torch.zeros_like(probabilities), 1.0).icdf(probabilities)


@torch.no_grad()
def latent_manifold(model: nn.Module, grid_size: int = 15,
                    dims: Sequence[int] = (0, 1), quantiles: Sequence[float] = (0.05, 0.95),
                    padding: int = 0) -> torch.Tensor:
    """Decode a grid_size x grid_size grid over latent dims (x, y), all other dims at 0.

    Columns sweep dims[0] left to right, rows sweep dims[1] bottom to top, so the picture reads
    like a plot of the latent plane (as in the Keras VAE example).
    """
    latent_dim = model.latent_dim
    check_latent_dims(dims, latent_dim, "latent_manifold.dims", pair=True)
    values = manifold_values(grid_size, quantiles).float()
    z = torch.zeros(grid_size, grid_size, latent_dim)
    z[..., dims[0]] = values.view(1, -1)
    z[..., dims[1]] = values.flip(0).view(-1, 1)
    images = decode_means(model, z.flatten(0, 1))
    return _grid(images, grid_size, padding)


def check_latent_dims(dims: Sequence[int], latent_dim: int, option: str,
                      pair: bool = False) -> None:
    """Raise a ValueError unless `dims` are distinct latent dimensions (exactly two if pair)."""
    dims = list(dims)
    valid = bool(dims) and len(set(dims)) == len(dims) and all(0 <= d < latent_dim for d in dims)
    if not valid or (pair and len(dims) != 2):
        what = "two different" if pair else "distinct"
        raise ValueError(f"{option} must be {what} latent dimensions in [0, {latent_dim}), got "
                         f"{dims}: set callbacks.latent_viz.{option}")


def interpolate(start: torch.Tensor, end: torch.Tensor, steps: int,
                method: str = "linear") -> torch.Tensor:
    """Points from start to end (both included); [N, D], [N, D] -> [N, steps, D].

    "spherical" is slerp on the unnormalised vectors (White, 2016), which keeps interpolants at
    a norm typical of N(0, I) samples instead of cutting through the low-density centre.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"interpolation method must be one of {INTERPOLATIONS}, got {method!r}")
    t = torch.linspace(0, 1, steps, device=start.device).view(1, -1, 1)
    a, b = start.unsqueeze(1), end.unsqueeze(1)
    linear = (1 - t) * a + t * b
    if method == "linear":
        return linear
    cos = nn.functional.cosine_similarity(start, end, dim=1).clamp(-1, 1)
    omega = torch.acos(cos).view(-1, 1, 1)
    sin = torch.sin(omega)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin
    # (Anti)parallel vectors have no unique great circle; the straight line is the limit.
    return torch.where(sin.abs() < 1e-6, linear, spherical)


@torch.no_grad()
def interpolation_grid(model: nn.Module, start_images: torch.Tensor, end_images: torch.Tensor,
                       steps: int = 10, method: str = "linear", padding: int = 2) -> torch.Tensor:
    """One row per pair: start image, `steps` decodes between the posterior means, end image."""
    mu_start, _ = model.encode(start_images)
    mu_end, _ = model.encode(end_images)
    path = interpolate(mu_start, mu_end, steps, method)
    decoded = decode_means(model, path.flatten(0, 1)).unflatten(0, path.shape[:2])
    rows = torch.cat([start_images.unsqueeze(1), decoded, end_images.unsqueeze(1)], dim=1)
    return _grid(rows.flatten(0, 1), steps + 2, padding)


@torch.no_grad()
def latent_traversal_grid(model: nn.Module, base: torch.Tensor,
                          dims: Sequence[int] | None = None,
                          limits: Sequence[float] = (-3.0, 3.0), steps: int = 11,
                          padding: int = 2) -> torch.Tensor:
    """One row per latent dim in `dims` (all if None): that dim swept over `limits`, the others
    held at `base` [D]."""
    latent_dim = base.shape[-1]
    dims = list(range(latent_dim)) if dims is None else list(dims)
    check_latent_dims(dims, latent_dim, "latent_traversal.dims")
    values = torch.linspace(limits[0], limits[1], steps, device=base.device)
    z = base.view(1, 1, -1).repeat(len(dims), steps, 1)
    for row, d in enumerate(dims):
        z[row, :, d] = values
    return _grid(decode_means(model, z.flatten(0, 1)), steps, padding)
