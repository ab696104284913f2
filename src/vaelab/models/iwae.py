"""Importance-weighted bounds (Burda et al. 2016): log p(x) >= E[logmeanexp_k log w_k], nats/image.

log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) with z_k ~ q(z|x). K=1 is the single-sample
ELBO; the bound tightens with K and approaches log p(x).
"""

import math
from typing import Protocol

import torch
from torch import nn

from vaelab.models.elbo import reparameterize

_LOG_2PI = math.log(2 * math.pi)


class LatentVariableModel(Protocol):
    """What the bounds need of a model (the VAE has it): q(z|x) parameters, p(x|z), and p(z)."""

    likelihood: nn.Module

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


def diagonal_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor,
                               logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim; [..., D] -> [...]."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(dim=-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dim; [..., D] -> [...]."""
    return -0.5 * (z.pow(2) + _LOG_2PI).sum(dim=-1)


def log_importance_weights(model: LatentVariableModel, x: torch.Tensor, mu: torch.Tensor,
                           logvar: torch.Tensor, num_samples: int,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """log w for K fresh samples z_k ~ q(z|x) per image; x [B, C, H, W] -> [K, B].

    All K * B samples go through the decoder as one batch.
    """
    k, b = num_samples, x.shape[0]
    z = reparameterize(mu.expand(k, *mu.shape), logvar.expand(k, *logvar.shape),
                       generator)  # [K, B, D]
    params = model.decode(z.reshape(k * b, -1))
    targets = x.expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    log_px_z = model.likelihood.log_prob(params, targets).view(k, b)
    return log_px_z + standard_normal_log_prob(z) - diagonal_gaussian_log_prob(z, mu, logvar)


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """logmeanexp over the K samples (dim 0); [K, B] -> [B]."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


@torch.no_grad()
def importance_weighted_bounds(model: LatentVariableModel, x: torch.Tensor, num_samples: int,
                               max_decodes: int = 50_000,
                               generator: torch.Generator | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the K-sample bound on log p(x), the ELBO estimated from the same K samples), each [B],
    decoding at most `max_decodes` images at once.

    Samples are drawn in chunks and combined with a running logsumexp (and a running sum), so
    memory is set by `max_decodes`, not by K (K=5000 fits on a CPU); x [B, C, H, W].
    """
    if num_samples < 1 or max_decodes < 1:
        raise ValueError(f"num_samples ({num_samples}) and max_decodes ({max_decodes}) must "
                         "be >= 1")
    mu, logvar = model.encode(x)
    per_chunk = max(1, max_decodes // x.shape[0])
    log_sum = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=mu.dtype)
    total = torch.zeros_like(log_sum)
    for start in range(0, num_samples, per_chunk):
        log_w = log_importance_weights(model, x, mu, logvar,
                                       min(per_chunk, num_samples - start), generator)
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_w, dim=0))
        total += log_w.sum(dim=0)
    return log_sum - math.log(num_samples), total / num_samples


def importance_weighted_log_likelihood(model: LatentVariableModel, x: torch.Tensor,
                                       num_samples: int, max_decodes: int = 50_000,
                                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The K-sample bound on log p(x) per image (see importance_weighted_bounds); [B]."""
    return importance_weighted_bounds(model, x, num_samples, max_decodes, generator)[0]
