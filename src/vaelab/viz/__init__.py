"""Pure plotting: tensors (and a VAE to decode with) in, image tensors or figures out."""

from vaelab.viz.figure_set import FIGURES, HIERARCHICAL, FigureSet
from vaelab.viz.grids import (
    interpolate,
    interpolation_grid,
    latent_manifold,
    latent_quantiles,
    latent_traversal_grid,
    layer_samples_grid,
    prior_sample_grid,
    quantile_levels,
    reconstruction_grid,
    temperature_grid,
)
from vaelab.viz.images import figure_to_image, save_png
from vaelab.viz.plots import (
    annotated_grid,
    kl_per_dim_chart,
    kl_per_layer_chart,
    latent_scatter,
    project_2d,
)

__all__ = [
    "FIGURES",
    "HIERARCHICAL",
    "FigureSet",
    "annotated_grid",
    "figure_to_image",
    "interpolate",
    "interpolation_grid",
    "kl_per_dim_chart",
    "kl_per_layer_chart",
    "latent_manifold",
    "latent_quantiles",
    "latent_scatter",
    "latent_traversal_grid",
    "layer_samples_grid",
    "prior_sample_grid",
    "quantile_levels",
    "project_2d",
    "reconstruction_grid",
    "save_png",
    "temperature_grid",
]
