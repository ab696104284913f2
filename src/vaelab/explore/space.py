"""The latent space of a trained VAE as the explorer's page asks about it: codes to images,
images to codes, the scatter of validation codes, directions and prior samples. Plain torch
through the model's interface (posterior, prior, decode, likelihood.mean, condition_of); no
web here, so scripts and tests use it directly.

Codes are flat vectors [D] (D = model.latent_dim). A hierarchical model plugs in through two
attributes (see `latent_layers` and `resample_from_layer`); every other model is one layer.
"""

import threading
from collections.abc import Sequence

import torch

from vaelab.explore.projection import ScatterProjection
from vaelab.models.attribute_vectors import attribute_vector
from vaelab.models.distributions import standard_deviations_as_levels
from vaelab.models.latents import EncodedImages, decode_means, encode_images
from vaelab.models.vae import condition_names
from vaelab.viz.grids import interpolate, latent_quantiles
from vaelab.viz.plots import class_colours

#: the largest |value| a request may give a code or condition entry (codes live near N(0, I))
MAX_ABS_VALUE = 1e4


class RequestError(ValueError):
    """A request this model cannot answer (wrong sizes, unknown names, out of range); the server
    answers it with a 4xx and its message."""


def latent_layers(model) -> list[int]:
    """The sizes of the model's latent layers in its flat code, top layer first:
    `model.latent_layers` on a hierarchical model (they add up to model.latent_dim), else one
    layer of latent_dim."""
    layers = [int(size) for size in getattr(model, "latent_layers", None) or [model.latent_dim]]
    if sum(layers) != model.latent_dim:
        raise ValueError(f"model.latent_layers {layers} must add up to model.latent_dim="
                         f"{model.latent_dim}, the length of the flat code")
    return layers


@torch.no_grad()
def resample_from_layer(model, z: torch.Tensor, layer: int, generator: torch.Generator,
                        temperature: float) -> torch.Tensor:
    """z [B, D] with latent layer `layer` (0: the top) and every layer below it drawn anew from
    the prior given the layers above, at `temperature`; the layers above are kept. A model
    without layers has only layer 0: a new prior sample."""
    if hasattr(model, "resample_from_layer"):
        return model.resample_from_layer(z, layer, generator, temperature)
    return model.prior.sample(len(z), generator, temperature).to(z.device)


def slider_ranges(model, codes: EncodedImages, sigmas: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(low, median, high) of each latent dim, each [D] on the CPU: the values at -sigmas, 0
    and +sigmas standard deviations, as quantiles of the prior's marginals where it has them,
    else of the aggregate posterior (viz.grids.latent_quantiles, as the manifold figure),
    widened to hold every encoded image's posterior mean."""
    levels = standard_deviations_as_levels(torch.tensor([-sigmas, 0.0, sigmas]))
    low, centre, high = latent_quantiles(model, codes, levels).cpu().clone()
    means = codes.means.cpu()
    low, high = torch.minimum(low, means.min(0).values), torch.maximum(high, means.max(0).values)
    flat = (high - low) < 1e-6  # a dim the aggregate posterior never moves
    low[flat], high[flat] = centre[flat] - 1, centre[flat] + 1
    return low, centre, high


def _hex(colour: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in colour[:3])


class LatentSpace:
    """A model with the first `num_points` images of a split encoded: their posterior means (the
    scatter), each dimension's use and range, and the operations the page calls. Thread-safe:
    the server calls it from a pool of threads, one model call at a time."""

    def __init__(self, model, datamodule, split: str = "val", num_points: int = 2000,
                 scatter_method: str = "pca", seed: int = 0, range_sigmas: float = 3.0,
                 unused_below: float = 0.01, batch_size: int = 500,
                 direction_split: str = "train", direction_images: int = 1000):
        self.model, self.data, self.split = model, datamodule, split
        self.batch_size, self.seed, self.unused_below = batch_size, seed, unused_below
        self.direction_split, self.direction_images = direction_split, direction_images
        self._lock = threading.Lock()
        self._generator = torch.Generator().manual_seed(seed)
        self._directions: dict[tuple[str, str | None], tuple[torch.Tensor, dict]] = {}
        self.layers = latent_layers(model)
        codes = self._encode(num_points)
        usage, self.usage_kind = codes.usage()
        self.usage = usage.cpu()
        self.low, self.centre, self.high = slider_ranges(model, codes, range_sigmas)
        self.projection = ScatterProjection(self.means, scatter_method, seed) \
            if model.latent_dim >= 2 else None

    def _encode(self, count: int) -> EncodedImages:
        """Encode the split's first `count` images; keep them (uint8 [N, C, H, W]), their
        classes [N], conditions [N, C'] (or None) and posterior means [N, D], on the CPU."""
        model, data = self.model, self.data
        self.images = data.images(self.split)[:count].cpu()
        labels = data.labels(self.split)[:count]
        self.classes = data.class_labels(labels).cpu()
        conditions = model.condition_of(labels.to(model.device))
        self.conditions = None if conditions is None else conditions.cpu()
        codes = encode_images(model, self.images, self.batch_size, data.model_input,
                              conditions, torch.Generator(model.device).manual_seed(self.seed))
        self.means = codes.means.cpu()
        return codes

    # -- what the page shows before any request ---------------------------------------------
    def info(self) -> dict:
        """Everything the page needs to lay itself out (JSON-ready)."""
        model = self.model
        order = self.usage.argsort(descending=True).tolist()
        return {
            "latent_dim": model.latent_dim,
            "image_shape": list(self.images.shape[1:]),
            "components": {"prior": type(model.prior).__name__,
                           "posterior": type(model.posterior_family).__name__,
                           "likelihood": type(model.likelihood).__name__},
            "dims": [{"index": d, "usage": float(self.usage[d]),
                      "unused": bool(self.usage[d] < self.unused_below),
                      "low": float(self.low[d]), "high": float(self.high[d]),
                      "centre": float(self.centre[d])} for d in order],
            "usage_kind": self.usage_kind,
            "centre": self.centre.tolist(),
            "condition": None if model.condition is None else {
                "kind": model.condition, "names": condition_names(self.data, model.condition)},
            "classes": self._classes(),
            "scatter": self._scatter(),
            "attributes": list(self.data.attribute_names),
            "layers": self.layers,
            "num_points": len(self.images),
        }

    def _classes(self) -> list[dict]:
        """The scatter's classes: id, name and colour (the latent_scatter figure's)."""
        names = self.data.class_names
        return [{"id": c, "name": names[c] if 0 <= c < len(names) else str(c),
                 "colour": _hex(colour)}
                for c, colour in class_colours(self.classes.unique().tolist()).items()]

    def _scatter(self) -> dict | None:
        """The posterior means in the plane, with their classes; None below 2 dims."""
        if self.projection is None:
            return None
        return {"x": self.projection.xy[:, 0].tolist(), "y": self.projection.xy[:, 1].tolist(),
                "classes": self.classes.tolist(), "axes": list(self.projection.axes),
                "split": self.split}

    def points(self, x_dim: int, y_dim: int) -> dict:
        """The scatter images' posterior means on two latent dims (the pad's background)."""
        for d in (x_dim, y_dim):
            self._check_dim(d)
        return {"x": self.means[:, x_dim].tolist(), "y": self.means[:, y_dim].tolist(),
                "classes": self.classes.tolist()}

    # -- requests ----------------------------------------------------------------------------
    def decode(self, z: Sequence[float], y: Sequence[float] | None) -> torch.Tensor:
        """The mean image of code z [D] under condition y; -> float [C, H, W] in [0, 1]."""
        code, condition = self.code(z), self.condition(y)
        with self._lock:
            return self._decode(code, condition)[0]

    def item(self, index: int) -> dict:
        """Scatter image `index`: the image, its reconstruction (decoded posterior mean), its
        code and condition."""
        if not 0 <= index < len(self.images):
            raise RequestError(f"index={index}: the scatter has images 0..{len(self.images) - 1}")
        z = self.means[index]
        y = None if self.conditions is None else self.conditions[index:index + 1]
        with self._lock:
            reconstruction = self._decode(z.unsqueeze(0), y)[0]
        return {"image": self.data.model_input(self.images[index:index + 1])[0],
                "reconstruction": reconstruction, "z": z.tolist(),
                "y": None if y is None else y[0].tolist(), "class": int(self.classes[index])}

    def encode(self, image: torch.Tensor, y: Sequence[float] | None) -> dict:
        """An image uint8 [C, H, W] of the data's shape as the model sees it, its
        reconstruction, its code and where the code lands in the scatter."""
        condition = self.condition(y)
        x = self.data.model_input(image.unsqueeze(0)).to(self.model.device)
        with self._lock, torch.no_grad():
            z = self.model.posterior(x, None if condition is None else
                                     condition.to(self.model.device)).mean
            reconstruction = self._decode(z, condition)[0]
        z = z.cpu()
        placed = None if self.projection is None else self.projection.place(z)[0].tolist()
        return {"image": x[0].cpu(), "reconstruction": reconstruction, "z": z[0].tolist(),
                "scatter_xy": placed}

    def interpolation(self, start: dict, end: dict, steps: int, method: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoded frames [steps, C, H, W], their codes [steps, D]) from code start["z"] to
        end["z"] (viz.grids.interpolate: linear or spherical); conditions move linearly."""
        za, zb = self.code(start["z"]), self.code(end["z"])
        ya, yb = self.condition(start.get("y")), self.condition(end.get("y"))
        try:
            path = interpolate(za, zb, steps, method)[0]
        except ValueError as err:
            raise RequestError(str(err)) from None
        conditions = None if ya is None else interpolate(ya, yb, steps, "linear")[0]
        with self._lock:
            return self._decode(path, conditions), path

    def direction(self, attribute: str, source: str | None) -> tuple[torch.Tensor, dict]:
        """The attribute vector [D] (vaelab.models.attribute_vectors: mean code of images with
        `attribute` minus without, or minus with `source`) on `direction_split`, and the
        image counts; computed once per pair."""
        key = (attribute, source)
        with self._lock:
            if key not in self._directions:
                try:
                    self._directions[key] = attribute_vector(
                        self.model, self.data, self.direction_split, attribute, source,
                        self.direction_images, self.batch_size,
                        torch.Generator().manual_seed(self.seed))
                except ValueError as err:
                    raise RequestError(str(err)) from None
            vector, counts = self._directions[key]
        return vector.cpu(), counts

    def sample(self, temperature: float, layer: int = 0,
               z: Sequence[float] | None = None) -> torch.Tensor:
        """A code [D]: from the prior at `temperature`, or, with `layer` > 0 on a hierarchical
        model, z with that layer and those below it drawn anew."""
        if not 0 <= layer < len(self.layers):
            raise RequestError(f"layer={layer}: this model has latent layers "
                               f"0..{len(self.layers) - 1} (0 is the top)")
        if layer > 0 and z is None:
            raise RequestError("resampling from a layer below the top needs the current code z")
        code = self.code(z) if z is not None else torch.zeros(1, self.model.latent_dim)
        with self._lock:
            sampled = resample_from_layer(self.model, code.to(self.model.device), layer,
                                          self._generator, temperature)
        return sampled[0].cpu()

    # -- checks and helpers -------------------------------------------------------------------
    def code(self, z: Sequence[float]) -> torch.Tensor:
        """A request's code as float [1, D], checked."""
        code = torch.as_tensor(list(z), dtype=torch.float32)
        if code.shape != (self.model.latent_dim,):
            raise RequestError(f"z has {code.numel()} numbers; this model's codes have "
                               f"{self.model.latent_dim}")
        return code.unsqueeze(0)

    def condition(self, y: Sequence[float] | None) -> torch.Tensor | None:
        """A request's condition as float [1, C] (None for an unconditional model), checked."""
        if self.model.condition is None:
            if y is not None:
                raise RequestError("this model is not conditional: send y=null")
            return None
        if y is None:
            raise RequestError(f"this model is conditional (model.condition="
                               f"{self.model.condition}): send y, {self.model.condition_dim} "
                               "numbers")
        condition = torch.as_tensor(list(y), dtype=torch.float32)
        if condition.shape != (self.model.condition_dim,):
            raise RequestError(f"y has {condition.numel()} numbers; this model's conditions "
                               f"have {self.model.condition_dim}")
        return condition.unsqueeze(0)

    def _check_dim(self, d: int) -> None:
        if not 0 <= d < self.model.latent_dim:
            raise RequestError(f"latent dimension {d} does not exist: this model has "
                               f"0..{self.model.latent_dim - 1}")

    def _decode(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return decode_means(self.model, z, self.batch_size, y=y).cpu()
