"""What to draw: the named latent-space figures, drawn from a fixed set of a split's images.

`FigureSet` is used by the LatentViz callback (which decides when and where to send them) and
by vaelab-viz. Each figure is one spec (vaelab.viz.figure_specs: its drawing function below, its
options, the models it applies to); the config schema built from the specs
(`vaelab.schemas.FigureSetConfig`) stops unknown keys, wrong types and invalid choices at
compose time, before anything runs.
"""

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import torch
from omegaconf import OmegaConf
from torch.nn import functional as F

from vaelab.models.latents import EncodedImages, encode_images
from vaelab.viz.figure_specs import SPECS
from vaelab.viz.grids import (
    check_latent_dims,
    interpolation_grid,
    latent_manifold,
    latent_quantiles,
    latent_traversal_grid,
    layer_samples_grid,
    prior_sample_grid,
    reconstruction_grid,
    sample_grid,
    temperature_grid,
)
from vaelab.viz.images import figure_to_image
from vaelab.viz.plots import annotated_grid, kl_per_dim_chart, kl_per_layer_chart, latent_scatter


# -- drawing ---------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Fixed images [N, C, H, W], their class ids [N] (or None) for colours, their conditions
    [N, C'] (a conditional model's; else None) and their posteriors."""

    images: torch.Tensor
    labels: torch.Tensor | None
    conditions: torch.Tensor | None
    codes: EncodedImages

    def condition(self, i: int) -> torch.Tensor | None:
        return None if self.conditions is None else self.conditions[i]


def draw_reconstructions(model, data: Encoded, num_images: int, ncol: int, padding: int):
    y = None if data.conditions is None else data.conditions[:num_images]
    return reconstruction_grid(model, data.images[:num_images], ncol, padding, y)


def draw_prior_samples(model, data: Encoded, num_samples: int, ncol: int, seed: int, padding: int,
                       temperature: float):
    return prior_sample_grid(model, num_samples, ncol, seed, padding, temperature,
                             rows=condition_rows(model, data, num_samples // ncol or 1))


def condition_rows(model, data: Encoded, count: int) -> torch.Tensor | None:
    """A conditional model's sample rows: one per class (label), else the conditions of the
    first `count` fixed images; None for an unconditional model."""
    if data.conditions is None:
        return None
    if model.condition == "label":
        return torch.eye(data.conditions.shape[1], device=data.conditions.device)
    return data.conditions[:count]


def draw_latent_scatter(model, data: Encoded, num_points: int, method: str, seed: int,
                        figsize: Sequence[float], dpi: int, point_size: float, names=None):
    labels = None if data.labels is None else data.labels[:num_points]
    return figure_to_image(latent_scatter(data.codes.means[:num_points], labels, method, seed,
                                          figsize, dpi, point_size, names))


def _pick_dims(dims: Sequence[int] | None, data: Encoded, count: int | None) -> list[int]:
    """The configured dims, or the most informative (EncodedImages.informative_dims)."""
    return list(dims) if dims else data.codes.informative_dims()[:count]


def draw_latent_manifold(model, data: Encoded, grid_size: int, dims: Sequence[int] | None,
                         quantiles: Sequence[float], padding: int, min_width: int):
    dims = _pick_dims(dims, data, 2)
    image, values = latent_manifold(model, data.codes, grid_size, dims, quantiles, padding,
                                    data.condition(0))
    labels = [[f"{v:.2g}" for v in axis.tolist()] for axis in values]
    fig = annotated_grid(image, grid_size, grid_size, padding, labels[0], labels[1][::-1],
                         f"z[{dims[0]}]", f"z[{dims[1]}]",
                         f"decoded over z[{dims[0]}], z[{dims[1]}] (others at their median)",
                         min_width)
    return figure_to_image(fig)


def draw_interpolation(model, data: Encoded, num_pairs: int, steps: int, method: str, padding: int):
    # Consecutive images make the pairs: (0, 1), (2, 3), ...
    n = 2 * min(num_pairs, len(data.images) // 2)
    pairs = data.images[:n]
    y = None if data.conditions is None else data.conditions[:n]
    return interpolation_grid(model, pairs[0::2], pairs[1::2], steps, method, padding,
                              None if y is None else y[0::2], None if y is None else y[1::2])


def draw_latent_traversal(model, data: Encoded, dims: Sequence[int] | None, limits: Sequence[float],
                          steps: int, base: str, padding: int, min_width: int):
    dims = _pick_dims(dims, data, None)
    if base == "image":
        z = data.codes.means[0]
    else:  # the centre of the latent space: each dim's median (0 under N(0, I))
        z = latent_quantiles(model, data.codes, torch.tensor([0.5]).double())[0]
        z = z.to(data.codes.means.device)
    image, values = latent_traversal_grid(model, z, data.codes, dims, limits, steps, padding,
                                          data.condition(0))
    kl = data.codes.kl_per_dim
    rows = [f"z[{d}]" + (f" {kl[:, d].mean():.1f} nats" if kl is not None else "")
            for d in dims]
    cols = [f"{s:+.0f}σ" for s in torch.linspace(limits[0], limits[1], steps).tolist()]
    fig = annotated_grid(image, len(dims), steps, padding, cols, rows, "position (prior σ)", "",
                         "each row sweeps one latent dim, the others held fixed", min_width)
    return figure_to_image(fig)


def draw_kl_per_dim(model, data: Encoded, num_points: int, collapsed_below: float,
                    figsize: Sequence[float], dpi: int):
    kl = data.codes.kl_per_dim
    return figure_to_image(kl_per_dim_chart(None if kl is None else kl[:num_points],
                                            data.codes.means[:num_points], collapsed_below,
                                            figsize, dpi))


def draw_temperature_samples(model, data: Encoded, temperatures: Sequence[float], ncol: int,
                             seed: int, padding: int, min_width: int):
    image = temperature_grid(model, temperatures, ncol, seed, padding, data.condition(0))
    fig = annotated_grid(image, len(temperatures), ncol, padding, None,
                         [f"T={t:g}" for t in temperatures], "", "temperature",
                         "prior samples, the same noise in every row", min_width)
    return figure_to_image(fig)


def draw_layer_samples(model, data: Encoded, image_index: int, num_samples: int, seed: int,
                       temperature: float, padding: int, min_width: int):
    layers = len(model.layer_sizes)
    image = layer_samples_grid(model, data.images[image_index], num_samples, seed, temperature,
                               padding, data.condition(image_index))
    rows = [f"top {k}" for k in range(1, layers + 1)]
    fig = annotated_grid(image, layers, num_samples + 1, padding,
                         ["image", *map(str, range(1, num_samples + 1))], rows, "",
                         "layers kept from q(z|x)",
                         f"the rest drawn from the prior (T={temperature:g})", min_width)
    return figure_to_image(fig)


def draw_kl_per_layer(model, data: Encoded, num_points: int, figsize: Sequence[float], dpi: int):
    return figure_to_image(kl_per_layer_chart(data.codes.kl_per_layer[:num_points], figsize,
                                              dpi))


#: name -> drawing function(model, encoded images, **options) -> image float [3, H, W], in the
#: specs' order
FIGURES: dict[str, Callable[..., torch.Tensor]] = {spec.name: globals()[spec.draw]
                                                   for spec in SPECS}
#: figures of a hierarchy's layers, which a model with one latent layer skips
HIERARCHICAL = tuple(spec.name for spec in SPECS if spec.hierarchical)
_SPECS = {spec.name: spec for spec in SPECS}


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
        unknown = [name for name in self.draw if name not in _SPECS]
        if unknown:
            raise ValueError(f"figures.draw: unknown figures {unknown}; the figures are "
                             f"{list(_SPECS)}")
        self.split, self.batch_size, self.min_width = split, batch_size, min_width
        # each figure's options: its spec's defaults, as configured
        self.options = {name: {**_plain(asdict(spec.options())), **_plain(options.get(name, {}))}
                        for name, spec in _SPECS.items()}
        self._images: tuple[torch.Tensor, torch.Tensor] | None = None

    def select(self, latent_dim: int, num_layers: int = 1) -> list[str]:
        """The figures this latent size and number of latent layers allow (warning about the
        others); bad latent dims in the options stop here, before training."""
        if "latent_manifold" in self.draw and latent_dim >= 2 and \
                self.options["latent_manifold"]["dims"]:
            check_latent_dims(self.options["latent_manifold"]["dims"], latent_dim,
                              "latent_manifold.dims", pair=True)
        if "latent_traversal" in self.draw and self.options["latent_traversal"]["dims"]:
            check_latent_dims(self.options["latent_traversal"]["dims"], latent_dim,
                              "latent_traversal.dims")
        # the figures of a hierarchy's layers are in the default set: a flat model skips them
        drawn = [f for f in self.draw if num_layers > 1 or not _SPECS[f].hierarchical]
        if latent_dim >= 2:
            return drawn
        skipped = [f for f in drawn if _SPECS[f].planar]
        if skipped:
            warnings.warn(f"latent_dim={latent_dim}: {skipped} need at least 2 latent "
                          "dimensions and are not drawn", stacklevel=2)
        return [f for f in drawn if not _SPECS[f].planar]

    def fixed_images(self, datamodule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first images of the split as model input [n, C, H, W], with their class ids [n]
        and labels ([n] or [n, K])."""
        if self._images is None:
            n = max([1] + [_SPECS[f].images_needed(self.options[f]) for f in self.draw
                           if _SPECS[f].images_needed is not None])
            images = datamodule.images(self.split)[:n]
            labels = datamodule.labels(self.split)[:n]
            self._images = (datamodule.model_input(images.cpu()),
                            datamodule.class_labels(labels).cpu(), labels.cpu())
        return self._images

    @torch.no_grad()
    def render_samples(self, model, datamodule, samplers: Mapping
                       ) -> dict[str, torch.Tensor]:
        """{"samples_<name>": image float [3, H, W]} for each fitted sampler of `samplers`,
        laid out as the prior_samples figure (its num_samples, ncol, seed, padding)."""
        options = self.options["prior_samples"]
        data = self._encoded(model, datamodule)
        rows = condition_rows(model, data, options["num_samples"] // options["ncol"] or 1)
        n = options["ncol"] if rows is not None else options["num_samples"]
        images = {}
        for name, sampler in samplers.items():
            codes = sampler.sample(model, n, torch.Generator().manual_seed(options["seed"]))
            images[f"samples_{name}"] = upscale(
                sample_grid(model, codes, options["ncol"], options["padding"], rows).cpu(),
                self.min_width)
        return images

    def _encoded(self, model, datamodule) -> Encoded:
        """The fixed images on the model's device with their conditions and posteriors."""
        images, classes, labels = (t.to(model.device) for t in self.fixed_images(datamodule))
        model.setup_data(datamodule)
        conditions = model.condition_of(labels)
        generator = torch.Generator(model.device).manual_seed(0)
        return Encoded(images, classes, conditions,
                       encode_images(model, images, self.batch_size, conditions=conditions,
                                     generator=generator))

    @torch.no_grad()
    def render(self, model, datamodule, figures: Sequence[str] | None = None
               ) -> dict[str, torch.Tensor]:
        """{name: image float [3, H, W]} of `figures` (default: what `select` allows), drawn
        in eval mode on the model's device."""
        figures = self.select(model.latent_dim, len(model.layer_sizes)) \
            if figures is None else figures
        was_training = model.training
        model.eval()
        try:
            data = self._encoded(model, datamodule)
            options = {**self.options,
                       "latent_scatter": {**self.options["latent_scatter"],
                                          "names": datamodule.class_names},
                       **{name: {**self.options[name], "min_width": self.min_width}
                          for name, spec in _SPECS.items() if spec.sized}}
            drawn = {name: FIGURES[name](model, data, **options[name]).cpu() for name in figures}
            return {name: image if _SPECS[name].framed else upscale(image, self.min_width)
                    for name, image in drawn.items()}
        finally:
            model.train(was_training)
