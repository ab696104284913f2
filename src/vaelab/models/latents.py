"""A set of images to posterior parameters, and latents to display images, in chunks."""

from collections.abc import Callable

import torch
from torch import nn


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_images(model: nn.Module, images: torch.Tensor, batch_size: int,
                  prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mu, logvar), each [N, D] on the model's device, of images [N, C, H, W] on
    any device; `prepare` turns a chunk into model input (e.g. datamodule.model_input on
    uint8 images)."""
    device = _device(model)
    mus, logvars = [], []
    for chunk in images.split(batch_size):
        x = chunk.to(device)
        mu, logvar = model.encode(prepare(x) if prepare is not None else x)
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def decode_means(model: nn.Module, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Display images E[x|z] in [0, 1]; z [N, D] -> [N, C, H, W] on the model's device."""
    z = z.to(_device(model))
    chunks = z.split(batch_size) if batch_size else [z]
    return torch.cat([model.likelihood.mean(model.decode(chunk)) for chunk in chunks])
