"""Fully connected encoder and decoder for images of any shape."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from vaelab.nets.layers import GaussianHead, mlp


class MLPEncoder(nn.Module):
    """Flatten -> hidden layers -> (mu, logvar); [B, C, H, W] -> 2 x [B, latent_dim]."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int,
                 hidden_dims: Sequence[int] = (512,), activation: str = "relu"):
        super().__init__()
        sizes = [math.prod(image_shape), *hidden_dims]
        self.body = nn.Sequential(nn.Flatten(), mlp(sizes, activation))
        self.head = GaussianHead(sizes[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x))


class MLPDecoder(nn.Module):
    """z -> hidden layers -> likelihood parameters; [B, latent_dim] -> [B, out_channels, H, W]
    (out_channels: the likelihood's parameters, default C)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int,
                 hidden_dims: Sequence[int] = (512,), activation: str = "relu",
                 out_channels: int | None = None):
        super().__init__()
        c, *spatial = image_shape
        output_shape = (c if out_channels is None else out_channels, *spatial)
        sizes = [latent_dim, *hidden_dims]
        self.body = nn.Sequential(
            mlp(sizes, activation),
            nn.Linear(sizes[-1], math.prod(output_shape)),
            nn.Unflatten(1, output_shape),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
