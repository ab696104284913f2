"""Structured-config schemas: dataclasses in Hydra's ConfigStore that validate config groups at
compose time (unknown keys, wrong types, invalid choices). Kept free of torch, so composing a
config (`vaelab-train --cfg job`) stays fast.
"""

from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore


class Figure(Enum):
    reconstructions = "reconstructions"
    prior_samples = "prior_samples"
    latent_scatter = "latent_scatter"
    latent_manifold = "latent_manifold"
    interpolation = "interpolation"
    latent_traversal = "latent_traversal"
    kl_per_dim = "kl_per_dim"
    temperature_samples = "temperature_samples"
    layer_samples = "layer_samples"
    kl_per_layer = "kl_per_layer"


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


@dataclass
class FigureSetConfig:
    """The schema of conf/figures/*.yaml (see conf/figures/default.yaml for what each means)."""

    _target_: str = "vaelab.viz.figure_set.FigureSet"
    draw: list[Figure] = field(default_factory=lambda: list(Figure))
    split: str = "val"
    batch_size: int = 1000
    min_width: int = 400
    reconstructions: ReconstructionsOptions = field(default_factory=ReconstructionsOptions)
    prior_samples: PriorSamplesOptions = field(default_factory=PriorSamplesOptions)
    latent_scatter: LatentScatterOptions = field(default_factory=LatentScatterOptions)
    latent_manifold: LatentManifoldOptions = field(default_factory=LatentManifoldOptions)
    interpolation: InterpolationOptions = field(default_factory=InterpolationOptions)
    latent_traversal: LatentTraversalOptions = field(default_factory=LatentTraversalOptions)
    kl_per_dim: KLPerDimOptions = field(default_factory=KLPerDimOptions)
    temperature_samples: TemperatureSamplesOptions = field(
        default_factory=TemperatureSamplesOptions)
    layer_samples: LayerSamplesOptions = field(default_factory=LayerSamplesOptions)
    kl_per_layer: KLPerLayerOptions = field(default_factory=KLPerLayerOptions)


def register_schemas() -> None:
    """conf/figures/*.yaml start from `figures/schema` (their defaults list names it)."""
    ConfigStore.instance().store(group="figures", name="schema", node=FigureSetConfig)
