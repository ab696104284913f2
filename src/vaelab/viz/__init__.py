"""Pure plotting: tensors (and a VAE to decode with) in, image tensors or figures out."""

from vaelab.viz.figure_set import FIGURES, FigureSet
from vaelab.viz.grids import (
    interpolate,
    interpolation_grid,
    latent_manifold,
    latent_quantiles,
    latent_traversal_grid,
    prior_sample_grid,
    quantile_levels,
    reconstruction_grid,
)
from vaelab.viz.images import figure_to_image, save_png
from vaelab.viz.plots import annotated_grid, kl_per_dim_chart, latent_scatter, project_2d

__all__ = [
    "FIGURES",
    "FigureSet",
    "annotated_grid",
    "figure_to_image",
    "interpolate",
    "interpolation_grid",
    "kl_per_dim_chart",
    "latent_manifold",
    "latent_quantiles",
    "latent_scatter",
    "latent_traversal_grid",
    "prior_sample_grid",
    "quantile_levels",
    "project_2d",
    "reconstruction_grid",
    "save_png",
]
