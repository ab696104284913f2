"""Small VAEs built directly (no Hydra), for unit tests of the model and its consumers."""

from collections.abc import Sequence
from functools import partial

import torch

from vaelab.models import VAE, BernoulliLikelihood, DiagonalGaussianPosterior
from vaelab.nets import MLPDecoder, MLPEncoder

SHAPE = (1, 8, 8)


def tiny_vae(latent_dim: int = 3, shape: Sequence[int] = SHAPE, hidden: Sequence[int] = (16,),
             seed: int = 0, condition_dim: int = 0, **components) -> VAE:
    """An MLP VAE with a Bernoulli likelihood, seeded; `components` go to VAE (posterior,
    prior, objective, kl_schedule, beta, condition, likelihood, ...), in eval mode."""
    torch.manual_seed(seed)
    posterior = components.pop("posterior", None) or DiagonalGaussianPosterior(latent_dim)
    features = 2 * latent_dim + getattr(posterior, "context_dim", 0)
    likelihood = components.pop("likelihood", None) or BernoulliLikelihood()
    return VAE(MLPEncoder(shape, features, hidden, condition_dim=condition_dim),
               MLPDecoder(shape, latent_dim, hidden, condition_dim=condition_dim),
               likelihood, latent_dim, partial(torch.optim.Adam, lr=1e-3),
               posterior=posterior, condition_dim=condition_dim, **components).eval()


def binary_images(n: int = 64, shape: Sequence[int] = SHAPE, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.3), generator=g)


def tiny_hvae(latent_dims: Sequence[int] = (4, 3, 2), shape: Sequence[int] = SHAPE,
              hidden: Sequence[int] = (16,), seed: int = 0, **components):
    """A Ladder VAE (MLP ladder, Bernoulli likelihood) with `latent_dims` bottom first, seeded;
    `components` go to HierarchicalVAE (posterior, prior, objective, ...), in eval mode."""
    from vaelab.models import HierarchicalVAE
    from vaelab.nets import MLPLadder

    torch.manual_seed(seed)
    posterior = components.pop("posterior", None) or DiagonalGaussianPosterior(latent_dims[-1])
    top_features = 2 * latent_dims[-1] + getattr(posterior, "context_dim", 0)
    ladder = MLPLadder(shape, latent_dims, top_features, hidden, hidden, hidden, hidden,
                       activation="tanh")
    return HierarchicalVAE(ladder, BernoulliLikelihood(), sum(latent_dims),
                           partial(torch.optim.Adam, lr=1e-3), posterior=posterior,
                           **components).eval()
