"""Importance-weighted bounds (Burda et al. 2016): log p(x) >= E[logmeanexp_k log w_k], nats/image.

log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) with z_k ~ q(z|x). K=1 is the single-sample
ELBO; the bound tightens with K and approaches log p(x).
"""

import math
from typing import Any, Protocol

import torch
from torch import nn


class LatentVariableModel(Protocol):
    """What the bounds need of a model (the VAE has it): a posterior for a batch, and log w for
    K fresh samples of it."""

    likelihood: nn.Module

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any: ...

    def log_importance_weights(self, x: torch.Tensor, y: torch.Tensor | None, q: Any,
                               num_samples: int, generator: torch.Generator | None = None
                               ) -> torch.Tensor: ...


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """logmeanexp over the K samples (dim 0); [K, B] -> [B]."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


#: likelihood parameters decoded at once by default: 16M float32 values, 64 MB (the likelihood's
#: own computation takes a few times that)
MAX_VALUES = 16_000_000


@torch.no_grad()
def importance_weighted_bounds(model: LatentVariableModel, x: torch.Tensor, num_samples: int,
                               max_values: int = MAX_VALUES,
                               generator: torch.Generator | None = None,
                               y: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the K-sample bound on log p(x) (log p(x|y) given conditions y [B, C]), the ELBO
    estimated from the same K samples), each [B], decoding at most `max_values` likelihood
    parameters at once; x [B, C, H, W].

    Images and samples are taken in chunks, the samples combined with a running logsumexp (and
    a running sum), so memory is set by `max_values`, not by K, the batch or the likelihood
    (a 10-component logistic mixture has 100 parameters per RGB pixel, a Bernoulli one).
    """
    if num_samples < 1 or max_values < 1:
        raise ValueError(f"num_samples ({num_samples}) and max_values ({max_values}) must "
                         "be >= 1")
    per_image = math.prod(model.likelihood.param_shape(tuple(x.shape[1:])))
    size = max(1, max_values // per_image)
    conditions = y.split(size) if y is not None else [None] * math.ceil(len(x) / size)
    bounds = [_chunk_bounds(model, chunk, cond, num_samples,
                            max(1, max_values // (len(chunk) * per_image)), generator)
              for chunk, cond in zip(x.split(size), conditions)]
    return torch.cat([b[0] for b in bounds]), torch.cat([b[1] for b in bounds])


def _chunk_bounds(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor | None,
                  num_samples: int, per_chunk: int, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """importance_weighted_bounds of images x, `per_chunk` samples per decoder call."""
    q = model.posterior(x, y)
    log_sum = torch.full((x.shape[0],), -math.inf, device=x.device)
    total = torch.zeros_like(log_sum)
    for start in range(0, num_samples, per_chunk):
        log_w = model.log_importance_weights(x, y, q, min(per_chunk, num_samples - start),
                                             generator)
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_w, dim=0))
        total += log_w.sum(dim=0)
    return log_sum - math.log(num_samples), total / num_samples


def importance_weighted_log_likelihood(model: LatentVariableModel, x: torch.Tensor,
                                       num_samples: int, max_values: int = MAX_VALUES,
                                       generator: torch.Generator | None = None,
                                       y: torch.Tensor | None = None) -> torch.Tensor:
    """The K-sample bound on log p(x) per image (see importance_weighted_bounds); [B]."""
    return importance_weighted_bounds(model, x, num_samples, max_values, generator, y)[0]
