"""The decoded image grids on a small untrained VAE: sizes, layouts and the values drawn."""

import pytest
import torch

from helpers.models import tiny_vae
from vaelab.models import MixtureOfGaussiansPrior
from vaelab.models.latents import decode_means, encode_images
from vaelab.viz import (
    interpolate,
    interpolation_grid,
    latent_manifold,
    latent_quantiles,
    latent_traversal_grid,
    prior_sample_grid,
    quantile_levels,
    reconstruction_grid,
)

SHAPE = (1, 8, 8)


def grid_shape(rows: int, cols: int, padding: int) -> tuple[int, int, int]:
    """make_grid's size for rows x cols tiles of SHAPE with `padding` pixels between them."""
    _, h, w = SHAPE
    return 3, rows * (h + padding) + padding, cols * (w + padding) + padding


def tile(grid: torch.Tensor, row: int, col: int, padding: int) -> torch.Tensor:
    """One channel of tile (row, col) of a make_grid image of SHAPE tiles; -> [H, W]."""
    _, h, w = SHAPE
    top, left = padding + row * (h + padding), padding + col * (w + padding)
    return grid[0, top:top + h, left:left + w]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(10, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_reconstruction_grid_puts_each_row_of_inputs_above_its_reconstructions(images):
    model = tiny_vae(3)
    grid = reconstruction_grid(model, images, ncol=4, padding=2)
    assert grid.shape == grid_shape(6, 4, 2)  # 10 images -> 3 rows of inputs + 3 of outputs
    recon = model.reconstruct(images)
    torch.testing.assert_close(tile(grid, 2, 1, 2), images[5, 0])
    torch.testing.assert_close(tile(grid, 3, 1, 2), recon[5, 0])
    assert tile(grid, 5, 3, 2).eq(0).all()  # the 12th slot of 10 is blank


def test_prior_samples_are_the_same_for_a_seed_and_differ_between_seeds():
    model = tiny_vae(3)
    grid = prior_sample_grid(model, num_samples=12, ncol=5, seed=3, padding=1)
    assert grid.shape == grid_shape(3, 5, 1)
    torch.testing.assert_close(grid, prior_sample_grid(model, 12, 5, seed=3, padding=1))
    assert not torch.equal(grid, prior_sample_grid(model, 12, 5, seed=4, padding=1))


def encoded(model, images):
    return encode_images(model, images, 100, generator=torch.Generator().manual_seed(0))


def test_a_standard_normal_prior_places_points_at_its_quantiles(images):
    model = tiny_vae(3)
    values = latent_quantiles(model, encoded(model, images), quantile_levels(15, (0.05, 0.95)))
    assert values.shape == (15, 3)
    assert values[0, 1] == pytest.approx(-1.6449, abs=1e-4)
    assert values[7, 2] == pytest.approx(0.0, abs=1e-6)
    assert values[-1, 0] == pytest.approx(1.6449, abs=1e-4)
    with pytest.raises(ValueError, match="quantiles"):
        quantile_levels(15, (0.0, 0.95))


def test_other_priors_place_points_at_the_aggregate_posteriors_quantiles(images):
    model = tiny_vae(3, prior=MixtureOfGaussiansPrior(3))
    codes = encoded(model, images)
    levels = quantile_levels(5, (0.1, 0.9))
    expected = torch.quantile(codes.samples.double(), levels, dim=0).float()
    torch.testing.assert_close(latent_quantiles(model, codes, levels), expected)


@pytest.mark.parametrize("latent_dim, dims", [(2, (0, 1)), (4, (3, 1))])
def test_latent_manifold_has_n_by_n_tiles_decoded_over_the_chosen_dims(latent_dim, dims, images):
    model = tiny_vae(latent_dim)
    n = 5
    grid, values = latent_manifold(model, encoded(model, images), grid_size=n, dims=dims,
                                   padding=0)
    assert grid.shape == (3, n * SHAPE[1], n * SHAPE[2]) and values.shape == (2, n)
    standard = torch.distributions.Normal(0.0, 1.0).icdf(
        torch.linspace(0.05, 0.95, n, dtype=torch.float64)).float()
    torch.testing.assert_close(values[0], standard)
    row, col = 0, 3  # top row: the largest value of dims[1]
    z = torch.zeros(1, latent_dim)
    z[0, dims[0]], z[0, dims[1]] = standard[col], standard[n - 1 - row]
    torch.testing.assert_close(tile(grid, row, col, 0), decode_means(model, z)[0, 0])
    with pytest.raises(ValueError, match="latent_manifold.dims"):
        latent_manifold(model, encoded(model, images), grid_size=n, dims=(0, latent_dim))


def test_interpolation_paths_end_at_their_endpoints_and_slerp_keeps_the_norm():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    for method in ("linear", "spherical"):
        path = interpolate(a, b, steps=5, method=method)
        assert path.shape == (1, 5, 2)
        torch.testing.assert_close(path[:, 0], a)
        torch.testing.assert_close(path[:, -1], b)
    mid_linear = interpolate(a, b, 3, "linear")[0, 1]
    mid_spherical = interpolate(a, b, 3, "spherical")[0, 1]
    assert mid_linear.norm().item() == pytest.approx(2 ** -0.5, abs=1e-6)
    assert mid_spherical.norm().item() == pytest.approx(1.0, abs=1e-6)
    # parallel vectors fall back to the straight line instead of dividing by sin(0)
    assert torch.isfinite(interpolate(a, 2 * a, 4, "spherical")).all()
    with pytest.raises(ValueError, match="linear"):
        interpolate(a, b, 3, "cubic")


def test_interpolation_grid_rows_start_and_end_with_the_images(images):
    model = tiny_vae(3)
    grid = interpolation_grid(model, images[:3], images[3:6], steps=4, method="spherical",
                              padding=2)
    assert grid.shape == grid_shape(3, 6, 2)
    torch.testing.assert_close(tile(grid, 1, 0, 2), images[1, 0])
    torch.testing.assert_close(tile(grid, 1, 5, 2), images[4, 0])


def test_latent_traversal_sweeps_one_dim_per_row(images):
    model = tiny_vae(3)
    codes = encoded(model, images)
    base = torch.tensor([0.5, -0.2, 0.1])
    grid, values = latent_traversal_grid(model, base, codes, dims=[2, 0], limits=(-2.0, 2.0),
                                         steps=5, padding=1)
    assert grid.shape == grid_shape(2, 5, 1) and values.shape == (5, 2)
    torch.testing.assert_close(values[:, 1], torch.linspace(-2, 2, 5), atol=1e-5, rtol=0)
    z = base.clone()
    z[0] = values[4, 1]  # row 1 sweeps dim 0, column 4 is the upper limit (2 sigma)
    torch.testing.assert_close(tile(grid, 1, 4, 1), decode_means(model, z[None])[0, 0])
    with pytest.raises(ValueError, match="latent_traversal.dims"):
        latent_traversal_grid(model, base, codes, dims=[3])


def test_a_conditional_model_draws_one_row_per_class_with_the_same_codes():
    model = tiny_vae(3, condition="label", condition_dim=4)
    rows = torch.eye(4)
    grid = prior_sample_grid(model, ncol=5, seed=2, padding=1, rows=rows)
    assert grid.shape == grid_shape(4, 5, 1)
    z = model.prior.sample(5, torch.Generator().manual_seed(2))
    torch.testing.assert_close(tile(grid, 2, 3, 1),
                               decode_means(model, z, y=rows[[2] * 5])[3, 0])
    with pytest.raises(ValueError, match="samples given conditions"):
        model.sample(3)
