"""Fully connected encoder and decoder for images of any shape."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from vaelab.nets.layers import mlp, with_condition


class MLPEncoder(nn.Module):
    """Flatten (and append the condition y) -> hidden layers -> linear head: the features a
    posterior reads; [B, C, H, W] (, [B, condition_dim]) -> [B, out_features]."""

    def __init__(self, image_shape: Sequence[int], out_features: int,
                 hidden_dims: Sequence[int] = (512,), activation: str = "relu",
                 condition_dim: int = 0, gated: bool = False):
        super().__init__()
        sizes = [math.prod(image_shape) + condition_dim, *hidden_dims]
        self.body = mlp(sizes, activation, gated)
        self.head = nn.Linear(sizes[-1], out_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.body(with_condition(x.flatten(1), y)))


class MLPDecoder(nn.Module):
    """z (with the condition y appended) -> hidden layers -> likelihood parameters;
    [B, latent_dim] (, [B, condition_dim]) -> [B, out_channels, H, W] (out_channels: the
    likelihood's parameters, default C)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int,
                 hidden_dims: Sequence[int] = (512,), activation: str = "relu",
                 out_channels: int | None = None, condition_dim: int = 0, gated: bool = False):
        super().__init__()
        c, *spatial = image_shape
        output_shape = (c if out_channels is None else out_channels, *spatial)
        sizes = [latent_dim + condition_dim, *hidden_dims]
        self.body = nn.Sequential(
            mlp(sizes, activation, gated),
            nn.Linear(sizes[-1], math.prod(output_shape)),
            nn.Unflatten(1, output_shape),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(with_condition(z, y))
