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


class GatedLinear(nn.Module):
    """h(x) * sigmoid(g(x)) with two linear maps (Dauphin et al. 2017; the VampPrior paper's
    GatedDense); [B, n_in] -> [B, n_out]."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def mlp(sizes: list[int], activation: str, gated: bool = False) -> nn.Sequential:
    """Linear layers through `sizes`, each followed by the activation (or gated layers)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [GatedLinear(n_in, n_out)] if gated else \
            [nn.Linear(n_in, n_out), make_activation(activation)]
    return nn.Sequential(*layers)


def with_condition(h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Features [B, F] with the condition vector y [B, C] appended (a CVAE's nets see y)."""
    return h if y is None else torch.cat([h, y.to(h.dtype)], dim=1)
