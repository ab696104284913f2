"""The networks of a latent hierarchy with top-down inference (Sønderby et al. 2016's Ladder VAE;
Kingma et al. 2016; the shape of NVAE and VDVAE), one config choice each (conf/model/ladder/).

A ladder is two modules that models.hvae.HierarchicalVAE runs:
- `encoder(x, y=None)`: the deterministic bottom-up pass, one feature tensor per latent layer
  (bottom first); the top layer's are [B, top_features], what the posterior component reads.
- `decoder`, the top-down path over layers L-1 (top) .. 0 (next to x), with a state h:
  `absorb(layer, h, z)` takes layer's codes z [N, D_layer] into h (h is None at the top),
  `prior(layer, h)` -> (h, p(z_layer | z_>layer)), `posterior(layer, h, features, p)` ->
  q(z_layer | x, z_>layer), both diagonal Gaussians given as (mu, log sigma^2), each
  [N, D_layer], and `output(h, y)` the likelihood's parameters [N, out_channels, H, W].
The top layer's prior and posterior are the model's prior and posterior components.
"""

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.nets.layers import mlp
from vaelab.nets.mlp import MLPDecoder, MLPEncoder
from vaelab.validation import check_number

#: a diagonal Gaussian's parameters (mu, log sigma^2), each [N, D]
Gaussian = tuple[torch.Tensor, torch.Tensor]


class Ladder(nn.Module):
    """Base class: `encoder`, `decoder` and the latent layers' sizes (bottom first)."""

    encoder: nn.Module
    decoder: nn.Module
    layer_sizes: tuple[int, ...]

    @classmethod
    def sizes(cls, **options) -> list[int]:
        """The latent layers' sizes for these config options (bottom first), without building."""
        raise NotImplementedError


def precision_weighted(estimate: torch.Tensor, prior: Gaussian) -> Gaussian:
    """The Ladder VAE's posterior: the bottom-up Gaussian estimate (mu_hat, log var_hat)
    (`estimate` [N, 2D]) and the top-down prior (mu_p, log var_p) combined as a product of
    Gaussians: precision 1/var_hat + 1/var_p, mean their precision-weighted average."""
    mu_hat, logvar_hat = estimate.chunk(2, dim=1)
    mu_p, logvar_p = prior
    # weight of mu_hat: (1/var_hat) / (1/var_hat + 1/var_p) = sigmoid(logvar_p - logvar_hat)
    weight = torch.sigmoid(logvar_p - logvar_hat)
    return weight * mu_hat + (1 - weight) * mu_p, -torch.logaddexp(-logvar_hat, -logvar_p)


def _vector_step(n_in: int, hidden: Sequence[int], n_out: int, activation: str,
                 gated: bool) -> nn.Sequential:
    """Hidden layers then a linear map; [N, n_in] -> [N, n_out]."""
    return nn.Sequential(mlp([n_in, *hidden], activation, gated),
                         nn.Linear(hidden[-1] if hidden else n_in, n_out))


class MLPBottomUp(nn.Module):
    """x -> the stem (vaelab's MLPEncoder) -> the bottom layer's features -> one step per layer
    above, each reading the features below; -> [features of layer 0, ..., of the top]."""

    def __init__(self, stem: MLPEncoder, steps: nn.ModuleList):
        super().__init__()
        self.stem, self.steps = stem, steps

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        features = [self.stem(x) if y is None else self.stem(x, y)]
        for step in self.steps:
            features.append(step(features[-1]))
        return features


class MLPTopDown(nn.Module):
    """The Ladder VAE's generative path: p(z_l | z_l+1) a diagonal Gaussian from an MLP of
    z_l+1, q(z_l | x, z_>l) its product with the bottom-up estimate, p(x | z_0) vaelab's
    MLPDecoder. The state h is the last layer's codes (a Markov chain)."""

    def __init__(self, output: MLPDecoder, steps: nn.ModuleList):
        super().__init__()
        self.output_net, self.steps = output, steps

    def absorb(self, layer: int, h, z: torch.Tensor) -> torch.Tensor:
        return z

    def prior(self, layer: int, h: torch.Tensor) -> tuple[torch.Tensor, Gaussian]:
        return h, tuple(self.steps[layer](h).chunk(2, dim=1))

    def posterior(self, layer: int, h, features: torch.Tensor, prior: Gaussian) -> Gaussian:
        return precision_weighted(features, prior)

    def output(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.output_net(h) if y is None else self.output_net(h, y)


class MLPLadder(Ladder):
    """Fully connected hierarchy with `latent_dims` (bottom first): the stem MLP (encoder_hidden)
    gives the bottom layer's bottom-up estimate (mu_hat, log var_hat), each step up (up_hidden)
    the next layer's from it, and the top layer's features (`top_features`, what the posterior
    component reads); each step down (down_hidden) gives p(z_l | z_l+1), and the output MLP
    (decoder_hidden) p(x | z_0). With one layer this is exactly vaelab's MLP VAE: the same
    MLPEncoder and MLPDecoder, built in the same order.

    Burda et al.'s 2-layer MNIST model (784-200-200-100-100-100-50, tanh) is latent_dims
    [100, 50], encoder/decoder_hidden [200, 200], up/down_hidden [100, 100]."""

    def __init__(self, image_shape: Sequence[int], latent_dims: Sequence[int], top_features: int,
                 encoder_hidden: Sequence[int] = (512,), decoder_hidden: Sequence[int] = (512,),
                 up_hidden: Sequence[int] = (256,), down_hidden: Sequence[int] = (256,),
                 activation: str = "relu", gated: bool = False, out_channels: int | None = None,
                 condition_dim: int = 0):
        super().__init__()
        self.layer_sizes = tuple(self.sizes(latent_dims))
        sizes = self.layer_sizes
        # the features each layer's bottom-up pass gives: a Gaussian estimate, the top's own
        features = [2 * d for d in sizes[:-1]] + [top_features]
        # the stem and output net first, so that one layer initialises like the VAE's nets
        stem = MLPEncoder(image_shape, features[0], encoder_hidden, activation, condition_dim,
                          gated)
        output = MLPDecoder(image_shape, sizes[0], decoder_hidden, activation, out_channels,
                            condition_dim, gated)
        up = nn.ModuleList(_vector_step(features[i], up_hidden, features[i + 1], activation, gated)
                           for i in range(len(sizes) - 1))
        down = nn.ModuleList(_vector_step(sizes[i + 1], down_hidden, 2 * sizes[i], activation,
                                          gated) for i in range(len(sizes) - 1))
        self.encoder = MLPBottomUp(stem, up)
        self.decoder = MLPTopDown(output, down)

    @classmethod
    def sizes(cls, latent_dims: Sequence[int], **options) -> list[int]:
        sizes = list(latent_dims)
        if not sizes:
            raise ValueError("model.ladder.latent_dims is empty: give one size per latent layer, "
                             "bottom first, e.g. [100, 50]")
        for size in sizes:
            check_number("model.ladder.latent_dims[]", size, low=1, integer=True)
        return sizes
