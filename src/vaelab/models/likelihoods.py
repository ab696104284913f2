"""Decoder likelihoods p(x|z): log-density summed over pixels, and the image a decoder shows."""

import math

import torch
from torch import nn
from torch.nn import functional as F


class Likelihood(nn.Module):
    """Turns decoder outputs `params` (shaped like x) into log p(x|z) and a displayable mean."""

    #: True when log p is a probability mass (so bits/dim is meaningful).
    discrete: bool = False

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over all pixels; [B, C, H, W] -> [B]."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z], clipped to the [0, 1] pixel range for display; shape of params."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Bernoulli(sigmoid(logits)); for binary (or binarised) pixels."""

    discrete = True

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # -BCE with logits is log Bernoulli(x; sigmoid(params)), stable for large |logits|.
        nll = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return -nll.flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class GaussianLikelihood(Likelihood):
    """p(x|z) = N(params, sigma^2) per pixel, with one sigma fixed or learned (as in sigma-VAE)."""

    def __init__(self, scale: float = 1.0, learn_scale: bool = False, min_scale: float = 1e-3):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"model.likelihood.scale must be > 0, got {scale}")
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.min_log_scale = math.log(min_scale)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # A floor on sigma stops a learned scale from collapsing onto discretised pixel values.
        log_scale = self.log_scale.clamp(min=self.min_log_scale)
        z2 = ((x - params) * torch.exp(-log_scale)).pow(2)
        log_p = -0.5 * z2 - log_scale - 0.5 * math.log(2 * math.pi)
        return log_p.flatten(1).sum(dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.clamp(0.0, 1.0)
