"""Decoded image grids: reconstructions, prior samples, manifold, interpolations, traversals.

Every function takes a VAE (its posterior, prior, decode and likelihood.mean) and tensors, runs
it without gradients, and returns one make_grid image, float [3, H, W] in [0, 1]. Conditions
`y` are a conditional model's; None for others.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.utils import make_grid

from vaelab.models.distributions import standard_deviations_as_levels
from vaelab.models.latents import EncodedImages, decode_means

#: Grid lines between tiles are white, so dark-background digits stay apart.
PAD_VALUE = 1.0
INTERPOLATIONS = ("linear", "spherical")


def _grid(images: torch.Tensor, ncol: int, padding: int) -> torch.Tensor:
    return make_grid(images.float().cpu(), nrow=ncol, padding=padding, pad_value=PAD_VALUE)


def _repeat(y: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """One condition [C] (or None) for n decodes; -> [n, C]."""
    return None if y is None else y.reshape(1, -1).expand(n, -1)


@torch.no_grad()
def reconstruction_grid(model: nn.Module, images: torch.Tensor, ncol: int = 8,
                        padding: int = 2, y: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of `ncol` inputs, each row followed by their reconstructions; images [N, C, H, W]."""
    recon = model.reconstruct(images, y)
    rows = math.ceil(len(images) / ncol)
    blank = rows * ncol - len(images)
    if blank:
        pad = images.new_zeros(blank, *images.shape[1:])
        images, recon = torch.cat([images, pad]), torch.cat([recon, pad])
    pairs = torch.stack([images.unflatten(0, (rows, ncol)), recon.unflatten(0, (rows, ncol))], 1)
    return _grid(pairs.flatten(0, 2), ncol, padding)


@torch.no_grad()
def sample_grid(model: nn.Module, codes: torch.Tensor, ncol: int = 8, padding: int = 2,
                rows: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded codes [n, D], `ncol` to a row. With conditions `rows` [R, C] (a conditional
    model): one row per condition, the first `ncol` codes in every row."""
    if rows is None:
        return _grid(decode_means(model, codes), ncol, padding)
    z = codes[:ncol]
    images = [decode_means(model, z, y=_repeat(y, len(z))) for y in rows]
    return _grid(torch.cat(images), ncol, padding)


@torch.no_grad()
def prior_sample_grid(model: nn.Module, num_samples: int = 64, ncol: int = 8, seed: int = 0,
                      padding: int = 2, temperature: float = 1.0,
                      rows: torch.Tensor | None = None) -> torch.Tensor:
    """sample_grid of prior codes drawn from a generator seeded with `seed` (so epochs
    compare), their spread scaled by `temperature`."""
    n = ncol if rows is not None else num_samples
    codes = model.prior.sample(n, torch.Generator().manual_seed(seed), temperature)
    return sample_grid(model, codes, ncol, padding, rows)


@torch.no_grad()
def temperature_grid(model: nn.Module, temperatures: Sequence[float], ncol: int = 8,
                     seed: int = 0, padding: int = 2, y: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """One row of `ncol` prior samples per temperature (the prior's spread, every layer's in a
    hierarchy, times it), the same noise in every row; conditions y [C] for every sample."""
    images = [decode_means(model, model.prior.sample(ncol, torch.Generator().manual_seed(seed),
                                                     temperature), y=_repeat(y, ncol))
              for temperature in temperatures]
    return _grid(torch.cat(images), ncol, padding)


@torch.no_grad()
def layer_samples_grid(model: nn.Module, image: torch.Tensor, num_samples: int = 8,
                       seed: int = 0, temperature: float = 1.0, padding: int = 2,
                       y: torch.Tensor | None = None) -> torch.Tensor:
    """What each layer of a hierarchy holds: row k (k = 1 .. L) decodes codes whose top k
    layers are the posterior means of `image` [C, H, W] and whose other layers are drawn from
    the prior given them (model.layer_samples), the image itself in the first column."""
    x = image.unsqueeze(0).expand(num_samples, *image.shape)
    cond = _repeat(y, num_samples)
    rows = []
    for keep in range(1, len(model.layer_sizes) + 1):
        codes = model.layer_samples(x, keep, torch.Generator().manual_seed(seed), temperature,
                                    cond)
        rows += [image.unsqueeze(0), decode_means(model, codes, y=cond)]
    return _grid(torch.cat(rows), num_samples + 1, padding)


def quantile_levels(grid_size: int, quantiles: Sequence[float]) -> torch.Tensor:
    """linspace(q0, q1, n) in float64, checked to lie strictly inside (0, 1)."""
    low, high = quantiles
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"manifold quantiles must satisfy 0 < low < high < 1, got {quantiles}")
    return torch.linspace(low, high, grid_size, dtype=torch.float64)


def latent_quantiles(model: nn.Module, encoded: EncodedImages,
                     levels: torch.Tensor) -> torch.Tensor:
    """Each latent dim's values at probability `levels` [n] -> [n, D]: the prior's quantiles
    where it has them in closed form (N(0, I)), else the aggregate posterior's empirical ones,
    from one posterior sample per encoded image."""
    values = model.prior.marginal_quantiles(levels)
    if values is None:
        values = torch.quantile(encoded.samples.double(), levels.to(encoded.samples.device),
                                dim=0).float()
    return values


@torch.no_grad()
def latent_manifold(model: nn.Module, encoded: EncodedImages, grid_size: int = 15,
                    dims: Sequence[int] = (0, 1), quantiles: Sequence[float] = (0.05, 0.95),
                    padding: int = 0, y: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the grid image, its [n] x and [n] y values) of grid_size^2 decodes over latent dims
    (x, y) at `latent_quantiles` of linspace(quantiles), the other dims at their medians.

    Columns sweep dims[0] left to right, rows sweep dims[1] bottom to top, so the picture reads
    like a plot of the latent plane (as in the Keras VAE example).
    """
    check_latent_dims(dims, model.latent_dim, "latent_manifold.dims", pair=True)
    levels = torch.cat([quantile_levels(grid_size, quantiles), torch.tensor([0.5]).double()])
    values = latent_quantiles(model, encoded, levels)
    grid, centre = values[:-1], values[-1]
    z = centre.view(1, 1, -1).repeat(grid_size, grid_size, 1)
    z[..., dims[0]] = grid[:, dims[0]].view(1, -1)
    z[..., dims[1]] = grid[:, dims[1]].flip(0).view(-1, 1)
    images = decode_means(model, z.flatten(0, 1), y=_repeat(y, grid_size ** 2))
    return _grid(images, grid_size, padding), grid[:, list(dims)].T.cpu()


def check_latent_dims(dims: Sequence[int], latent_dim: int, option: str,
                      pair: bool = False) -> None:
    """Raise a ValueError unless `dims` are distinct latent dimensions (exactly two if pair)."""
    dims = list(dims)
    valid = bool(dims) and len(set(dims)) == len(dims) and all(0 <= d < latent_dim for d in dims)
    if not valid or (pair and len(dims) != 2):
        what = "two different" if pair else "distinct"
        raise ValueError(f"{option} must be {what} latent dimensions in [0, {latent_dim}), got "
                         f"{dims}: set callbacks.latent_viz.figures.{option} (figures.{option} "
                         "in vaelab-viz), or null for the most informative")


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
                       steps: int = 10, method: str = "linear", padding: int = 2,
                       y_start: torch.Tensor | None = None,
                       y_end: torch.Tensor | None = None) -> torch.Tensor:
    """One row per pair: start image, `steps` decodes between the posterior means, end image.
    A conditional model's conditions are interpolated linearly alongside."""
    path = interpolate(model.posterior(start_images, y_start).mean,
                       model.posterior(end_images, y_end).mean, steps, method)
    conditions = None if y_start is None else \
        interpolate(y_start, y_end, steps, "linear").flatten(0, 1)
    decoded = decode_means(model, path.flatten(0, 1), y=conditions).unflatten(0, path.shape[:2])
    rows = torch.cat([start_images.unsqueeze(1), decoded, end_images.unsqueeze(1)], dim=1)
    return _grid(rows.flatten(0, 1), steps + 2, padding)


@torch.no_grad()
def latent_traversal_grid(model: nn.Module, base: torch.Tensor, encoded: EncodedImages,
                          dims: Sequence[int], limits: Sequence[float] = (-3.0, 3.0),
                          steps: int = 11, padding: int = 2,
                          y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the grid, the [steps, len(dims)] values) of one row per latent dim in `dims`, swept
    from limits[0] to limits[1] standard deviations (as quantiles: Phi(limit) of the prior's
    marginal, else of the aggregate posterior), the others held at `base` [D]."""
    check_latent_dims(dims, base.shape[-1], "latent_traversal.dims")
    levels = standard_deviations_as_levels(torch.linspace(limits[0], limits[1], steps))
    values = latent_quantiles(model, encoded, levels).to(base.device)[:, list(dims)]
    z = base.view(1, 1, -1).repeat(len(dims), steps, 1)
    for row, d in enumerate(dims):
        z[row, :, d] = values[:, row]
    images = decode_means(model, z.flatten(0, 1), y=_repeat(y, len(dims) * steps))
    return _grid(images, steps, padding), values.cpu()
