"""Pure plotting: tensors (and a VAE to decode with) in, image tensors or figures out.

The names below load their module (and torch) when first used, so that the config schema can
read vaelab.viz.figure_specs without importing torch.
"""

from importlib import import_module

#: module -> the names it gives the package
_EXPORTS = {
    "figure_set": ("FIGURES", "HIERARCHICAL", "FigureSet"),
    "grids": ("interpolate", "interpolation_grid", "latent_manifold", "latent_quantiles",
              "latent_traversal_grid", "layer_samples_grid", "prior_sample_grid",
              "quantile_levels", "reconstruction_grid", "temperature_grid"),
    "images": ("figure_to_image", "save_png"),
    "plots": ("annotated_grid", "kl_per_dim_chart", "kl_per_layer_chart", "latent_scatter",
              "project_2d"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)


def __getattr__(name: str):
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(import_module(f"vaelab.viz.{module}"), name)
    raise AttributeError(f"module 'vaelab.viz' has no attribute {name!r}")
