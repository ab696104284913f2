"""The ${vaelab.param_channels:${model.likelihood},${data.image_shape}} resolver: how many
output channels a decoder needs for the configured likelihood, asked of the likelihood class."""

import inspect
from collections.abc import Sequence

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf


def param_channels(likelihood: DictConfig, image_shape: Sequence[int]) -> int:
    """`param_channels(C, **options)` of the likelihood's `_target_` class, given the keys of the
    likelihood config that the method names as parameters (others are constructor-only)."""
    target = likelihood.get("_target_")
    if target is None:
        raise ValueError("model.likelihood has no _target_: name the likelihood class, e.g. "
                         "model/likelihood=bernoulli (conf/model/likelihood/)")
    cls = get_class(target)
    if not hasattr(cls, "param_channels"):
        raise ValueError(f"{target} has no param_channels classmethod: subclass "
                         "vaelab.models.Likelihood, or set model.decoder.out_channels yourself")
    names = list(inspect.signature(cls.param_channels).parameters)[1:]  # after image_channels
    options = {key: value for key, value in OmegaConf.to_container(likelihood, resolve=True).items()
               if key in names}
    return cls.param_channels(image_shape[0], **options)
