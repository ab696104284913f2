"""Small building blocks shared by the MLP and conv nets."""

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    """An activation module from its config name (e.g. "relu", "tanh")."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}: choose one of {sorted(ACTIVATIONS)}"
        ) from None


class GaussianHead(nn.Module):
    """Linear map to the posterior parameters; [B, F] -> (mu, logvar), each [B, latent_dim]."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.linear(h).chunk(2, dim=1)
        return mu, logvar


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers through `sizes`, each followed by the activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), make_activation(activation)]
    return nn.Sequential(*layers)
