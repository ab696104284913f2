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


#: likelihood parameters decoded at once by default: 16M float32 values, 64 MB (the likelihood's
#: own computation takes a few times that)
MAX_VALUES = 16_000_000


@torch.no_grad()
def importance_weighted_bounds(model: LatentVariableModel, x: torch.Tensor, num_samples: int,
                               max_values: int = MAX_VALUES,
                               generator: torch.Generator | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the K-sample bound on log p(x), the ELBO estimated from the same K samples), each [B],
    decoding at most `max_values` likelihood parameters at once; x [B, C, H, W].

    Images and samples are taken in chunks, the samples combined with a running logsumexp (and
    a running sum), so memory is set by `max_values`, not by K, the batch or the likelihood
    (a 10-component logistic mixture has 100 parameters per RGB pixel, a Bernoulli one).
    """
    if num_samples < 1 or max_values < 1:
        raise ValueError(f"num_samples ({num_samples}) and max_values ({max_values}) must "
                         "be >= 1")
    per_image = math.prod(model.likelihood.param_shape(tuple(x.shape[1:])))
    bounds = [_chunk_bounds(model, chunk, num_samples,
                            max(1, max_values // (len(chunk) * per_image)), generator)
              for chunk in x.split(max(1, max_values // per_image))]
    return torch.cat([b[0] for b in bounds]), torch.cat([b[1] for b in bounds])


def _chunk_bounds(model: LatentVariableModel, x: torch.Tensor, num_samples: int,
                  per_chunk: int, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """importance_weighted_bounds of images x, `per_chunk` samples per decoder call."""
    mu, logvar = model.encode(x)
    log_sum = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=mu.dtype)
    total = torch.zeros_like(log_sum)
    for start in range(0, num_samples, per_chunk):
        log_w = log_importance_weights(model, x, mu, logvar,
                                       min(per_chunk, num_samples - start), generator)
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_w, dim=0))
        total += log_w.sum(dim=0)
    return log_sum - math.log(num_samples), total / num_samples


def importance_weighted_log_likelihood(model: LatentVariableModel, x: torch.Tensor,
                                       num_samples: int, max_values: int = MAX_VALUES,
                                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The K-sample bound on log p(x) per image (see importance_weighted_bounds); [B]."""
    return importance_weighted_bounds(model, x, num_samples, max_values, generator)[0]
