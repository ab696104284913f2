"""One spec per latent-space figure: its name, its drawing function, its options (a dataclass:
conf/figures/*.yaml's node of that name, checked when the config is composed) and which models
it applies to. vaelab.viz.figure_set draws from them, vaelab.schemas builds the figures'
config schema from them. Free of torch, so composing a config stays fast.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class Projection(Enum):
    pca = "pca"
    tsne = "tsne"


class Interpolation(Enum):
    linear = "linear"
    spherical = "spherical"


class TraversalBase(Enum):
    image = "image"
    zero = "zero"


@dataclass
class ReconstructionsOptions:
    num_images: int = 32
    ncol: int = 8
    padding: int = 2


@dataclass
class PriorSamplesOptions:
    num_samples: int = 64
    ncol: int = 8
    seed: int = 0
    padding: int = 2
    temperature: float = 1.0


@dataclass
class LatentScatterOptions:
    num_points: int = 5000
    method: Projection = Projection.pca
    seed: int = 0
    figsize: list[float] = field(default_factory=lambda: [6.0, 5.0])
    dpi: int = 100
    point_size: float = 12.0


@dataclass
class LatentManifoldOptions:
    grid_size: int = 15
    dims: list[int] | None = None
    quantiles: list[float] = field(default_factory=lambda: [0.05, 0.95])
    padding: int = 1


@dataclass
class InterpolationOptions:
    num_pairs: int = 8
    steps: int = 10
    method: Interpolation = Interpolation.linear
    padding: int = 2


@dataclass
class LatentTraversalOptions:
    dims: list[int] | None = None
    limits: list[float] = field(default_factory=lambda: [-3.0, 3.0])
    steps: int = 11
    base: TraversalBase = TraversalBase.image
    padding: int = 2


@dataclass
class KLPerDimOptions:
    num_points: int = 5000
    collapsed_below: float = 0.01
    figsize: list[float] = field(default_factory=lambda: [6.0, 3.5])
    dpi: int = 100


@dataclass
class TemperatureSamplesOptions:
    temperatures: list[float] = field(default_factory=lambda: [1.0, 0.85, 0.7, 0.5])
    ncol: int = 8
    seed: int = 0
    padding: int = 2


@dataclass
class LayerSamplesOptions:
    image_index: int = 0
    num_samples: int = 8
    seed: int = 0
    temperature: float = 1.0
    padding: int = 2


@dataclass
class KLPerLayerOptions:
    num_points: int = 5000
    figsize: list[float] = field(default_factory=lambda: [6.0, 3.5])
    dpi: int = 100


@dataclass(frozen=True)
class FigureSpec:
    """A figure `name`, drawn by vaelab.viz.figure_set.<draw>(model, encoded images, **options)
    -> image float [3, H, W], with `options` a dataclass of its settings."""

    name: str
    draw: str
    options: type
    #: figures of a hierarchy's layers, which a model with one latent layer skips
    hierarchical: bool = False
    #: drawn in a latent plane, which a 1-D latent space does not have
    planar: bool = False
    #: already drawn at size (matplotlib), not enlarged afterwards
    framed: bool = False
    #: takes the figure set's min_width as an option (the annotated grids)
    sized: bool = False
    #: how many of the fixed images it uses, from its options (None: none)
    images_needed: Callable[[dict], int] | None = None


SPECS = (
    FigureSpec("reconstructions", "draw_reconstructions", ReconstructionsOptions,
               images_needed=lambda o: o["num_images"]),
    FigureSpec("prior_samples", "draw_prior_samples", PriorSamplesOptions),
    FigureSpec("latent_scatter", "draw_latent_scatter", LatentScatterOptions, planar=True,
               framed=True, images_needed=lambda o: o["num_points"]),
    FigureSpec("latent_manifold", "draw_latent_manifold", LatentManifoldOptions, planar=True,
               framed=True, sized=True),
    FigureSpec("interpolation", "draw_interpolation", InterpolationOptions,
               images_needed=lambda o: 2 * o["num_pairs"]),
    FigureSpec("latent_traversal", "draw_latent_traversal", LatentTraversalOptions, framed=True,
               sized=True),
    FigureSpec("kl_per_dim", "draw_kl_per_dim", KLPerDimOptions, framed=True,
               images_needed=lambda o: o["num_points"]),
    FigureSpec("temperature_samples", "draw_temperature_samples", TemperatureSamplesOptions,
               framed=True, sized=True),
    FigureSpec("layer_samples", "draw_layer_samples", LayerSamplesOptions, hierarchical=True,
               framed=True, sized=True, images_needed=lambda o: o["image_index"] + 1),
    FigureSpec("kl_per_layer", "draw_kl_per_layer", KLPerLayerOptions, framed=True,
               images_needed=lambda o: o["num_points"]),
)
