"""Pure plotting: tensors (and a VAE to decode with) in, image tensors or figures out."""

from vaelab.viz.figure_set import FIGURES, FigureSet
from vaelab.viz.grids import (
    interpolate,
    interpolation_grid,
    latent_manifold,
    latent_traversal_grid,
    manifold_values,
    prior_sample_grid,
    reconstruction_grid,
)
from vaelab.viz.images import figure_to_image, save_png
from vaelab.viz.plots import kl_per_dim_chart, kl_per_dimension, latent_scatter, project_2d

__all__ = [
    "FIGURES",
    "FigureSet",
    "figure_to_image",
    "interpolate",
    "interpolation_grid",
    "kl_per_dim_chart",
    "kl_per_dimension",
    "latent_manifold",
    "latent_scatter",
    "latent_traversal_grid",
    "manifold_values",
    "prior_sample_grid",
    "project_2d",
    "reconstruction_grid",
    "save_png",
]
