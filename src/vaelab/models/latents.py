"""A set of images to codes, and codes to display images, in chunks, through the model's
interface (posterior, prior, decode, likelihood.mean)."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vaelab.models.distributions import kl_per_dimension, kl_per_image


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _chunks(tensor: torch.Tensor | None, size: int, count: int) -> list:
    return list(tensor.split(size)) if tensor is not None else [None] * count


@dataclass
class EncodedImages:
    """What figures and metrics read of a set of N images' posteriors."""

    #: q(z|x)'s display mean per image (the mean for a Gaussian), [N, D]
    means: torch.Tensor
    #: one z ~ q(z|x) per image: draws from the aggregate posterior, [N, D]
    samples: torch.Tensor
    #: KL(q(z_d|x) || p(z_d)) per image and dimension, [N, D]; None where the model has no KL
    #: per dimension (a prior or posterior that does not factorise)
    kl_per_dim: torch.Tensor | None
    #: the KL of each latent layer per image (bottom first; one layer for a flat model), [N, L]
    kl_per_layer: torch.Tensor

    def usage(self) -> tuple[torch.Tensor, str]:
        """(how much each dimension is used, float64 [D]; by what): the mean KL in nats where
        it exists per dimension ("kl"), else the variance of the posterior means over the
        images ("variance", the active-units criterion, Burda et al. 2016)."""
        if self.kl_per_dim is not None:
            return self.kl_per_dim.double().mean(dim=0), "kl"
        if len(self.means) > 1:
            return self.means.double().var(dim=0), "variance"
        return torch.zeros(self.means.shape[1], dtype=torch.float64), "variance"

    def informative_dims(self) -> list[int]:
        """The dimensions, most used first (by `usage`)."""
        return self.usage()[0].argsort(descending=True).tolist()


@torch.no_grad()
def encode_images(model, images: torch.Tensor, batch_size: int,
                  prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  conditions: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> EncodedImages:
    """The posteriors of images [N, C, H, W] on any device (conditions [N, C'] for a conditional
    model), on the model's device; `prepare` turns a chunk into model input (e.g.
    datamodule.model_input on uint8 images); `generator` (on the model's device) draws the
    samples."""
    device = _device(model)
    p = model.prior()
    means, samples, kls, layers = [], [], [], []
    count = len(images.split(batch_size))
    for chunk, y in zip(images.split(batch_size), _chunks(conditions, batch_size, count)):
        x = chunk.to(device)
        q = model.posterior(prepare(x) if prepare is not None else x,
                            None if y is None else y.to(device))
        means.append(q.mean)
        samples.append(q.sample(generator=generator))
        kls.append(kl_per_dimension(q, p))
        layers.append(kl_per_layer(q, p, samples[-1]))
    kl = torch.cat(kls) if all(k is not None for k in kls) else None
    return EncodedImages(torch.cat(means), torch.cat(samples), kl, torch.cat(layers))


def kl_per_layer(q, p, z: torch.Tensor) -> torch.Tensor:
    """The KL of each latent layer at the sample z of q; [B, L]: a hierarchy's own (at its last
    draw), else the one layer's KL (closed form where it exists, else log q(z) - log p(z))."""
    own = getattr(q, "kl_per_layer", None)
    return own(p) if own is not None else kl_per_image(q, p, z)[:, None]


@torch.no_grad()
def posterior_means(model, images: torch.Tensor, batch_size: int,
                    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    conditions: torch.Tensor | None = None) -> torch.Tensor:
    """q(z|x)'s display mean of each image [N, C, H, W] -> [N, D] on the model's device: the
    codes that scatter plots, active units, attribute vectors and disentanglement scores use."""
    device = _device(model)
    count = len(images.split(batch_size))
    return torch.cat([
        model.posterior(prepare(x.to(device)) if prepare is not None else x.to(device),
                        None if y is None else y.to(device)).mean
        for x, y in zip(images.split(batch_size), _chunks(conditions, batch_size, count))])


@torch.no_grad()
def decode_means(model, z: torch.Tensor, batch_size: int | None = None,
                 y: torch.Tensor | None = None) -> torch.Tensor:
    """Display images E[x|z] in [0, 1]; z [N, D] (conditions y [N, C]) -> [N, C, H, W] on the
    model's device."""
    device = _device(model)
    z = z.to(device)
    y = None if y is None else y.to(device)
    size = batch_size or len(z) or 1
    return torch.cat([model.likelihood.mean(model.decode(chunk, cond))
                      for chunk, cond in zip(z.split(size), _chunks(y, size, len(z.split(size))))])
