"""The latent distributions: q(z|x) and p(z) as torch.distributions, and the KL between them.

Every distribution over z here samples with an optional torch.Generator (so figures, IWAE and
evaluation draw reproducibly without touching the global stream) and returns per-image values:
a batch of B codes is [B, D] (or [K, B, D] for K samples each), log_prob gives [B] ([K, B]).
"""

import functools
import math

import torch
from torch.distributions import (
    Distribution,
    Independent,
    Normal,
    TransformedDistribution,
    kl_divergence,
    register_kl,
)

_LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian(Independent):
    """N(mu, diag(exp(logvar))) over the last dim, built from (mu, logvar), each [..., D].
    `path_gradient`: the one-sample KL estimate takes its gradient through the sample only
    (`kl_log_prob`)."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, path_gradient: bool = False):
        self.mu, self.logvar = mu, logvar
        self.path_gradient = path_gradient
        # Independent's own __init__ would build the per-dimension Normal (base_dist) now; a
        # training step reads only mu and logvar, so it is built on first use instead.
        self.reinterpreted_batch_ndims = 1
        Distribution.__init__(self, mu.shape[:-1], mu.shape[-1:], validate_args=False)

    @functools.cached_property
    def base_dist(self) -> Normal:
        """The independent Normal of each dimension, [..., D]."""
        return Normal(self.mu, torch.exp(0.5 * self.logvar), validate_args=False)

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None):
        """z = mu + sigma * eps, eps ~ N(0, I) (from `generator` if given);
        -> [*sample_shape, ..., D]."""
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype)
        mu, logvar = self.mu, self.logvar
        if shape != mu.shape:
            # sigma of the expanded logvar: the same values, and gradients summed in the same
            # order whatever the sample shape
            mu, logvar = mu.expand(shape), logvar.expand(shape)
        return mu + torch.exp(0.5 * logvar) * eps

    def sample(self, sample_shape=(), generator: torch.Generator | None = None):
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        # In terms of logvar, which the encoder outputs: exact where sigma^2 would round.
        return -0.5 * ((z - self.mu).pow(2) * torch.exp(-self.logvar) + self.logvar
                       + _LOG_2PI).sum(dim=-1)

    def kl_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) as the one-sample KL estimate uses it: with `path_gradient`, the same value
        with the parameters' gradient flowing through z alone ("sticking the landing", Roeder et
        al. 2017): the score term, zero in expectation, is dropped, so the estimator's variance
        falls (to zero where q equals the true posterior)."""
        if not self.path_gradient:
            return self.log_prob(z)
        return DiagonalGaussian(self.mu.detach(), self.logvar.detach()).log_prob(z)

    def pairwise_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z_i,d | x_j) of every code z_i [B, D] under every image j's posterior, per
        dimension; -> [B, B, D] indexed [i, j, d] (beta-TCVAE's aggregate posterior)."""
        # Differences of large log-densities follow: never in half precision (autocast).
        wide = torch.promote_types(z.dtype, torch.float32)
        z, mu, logvar = (t.to(wide) for t in (z, self.mu, self.logvar))
        return Normal(mu[None], torch.exp(0.5 * logvar[None]),
                      validate_args=False).log_prob(z[:, None])


class StandardNormal(Independent):
    """N(0, I) over `latent_dim` dimensions, on `device`."""

    def __init__(self, latent_dim: int, device=None, dtype=torch.float32):
        zeros = torch.zeros(latent_dim, device=device, dtype=dtype)
        super().__init__(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1,
                         validate_args=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2) + _LOG_2PI).sum(dim=-1)


def standard_deviations_as_levels(values: torch.Tensor) -> torch.Tensor:
    """N(0, 1)'s CDF at `values` given in standard deviations, kept inside (0, 1): what the
    figures turn into quantiles of any prior or aggregate posterior."""
    return Normal(0.0, 1.0).cdf(values.double()).clamp(1e-6, 1 - 1e-6)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension KL(N(mu, sigma^2) || N(0, 1)) in nats; [..., D] -> [..., D]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@register_kl(DiagonalGaussian, StandardNormal)
def _kl_diagonal_standard(q: DiagonalGaussian, p: StandardNormal) -> torch.Tensor:
    return gaussian_kl(q.mu, q.logvar).sum(dim=-1)


def kl_per_dimension(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """KL(q || p) of each latent dimension, [..., D], where both factorise over the dimensions
    and the pair has a closed form; None otherwise (no per-dimension split exists). A posterior
    that knows its own (a hierarchy's, at its last draw) is asked."""
    own = getattr(q, "kl_per_dimension", None)
    if own is not None:
        return own(p)
    if isinstance(q, DiagonalGaussian) and isinstance(p, StandardNormal):
        return gaussian_kl(q.mu, q.logvar)
    if type(q) in (Independent, DiagonalGaussian) and type(p) in (Independent, DiagonalGaussian):
        try:
            return kl_divergence(q.base_dist, p.base_dist)
        except NotImplementedError:
            return None
    return None


def kl_log_q(q: Distribution, z: torch.Tensor) -> torch.Tensor:
    """log q(z) as the one-sample KL estimate takes it: with the gradient q's `kl_log_prob`
    says, where q has one (the path gradient), else q's log_prob."""
    return getattr(q, "kl_log_prob", q.log_prob)(z)


def kl_per_image(q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per image, [...]: in closed form where torch's kl_divergence registry has the
    pair, else the single-sample estimate kl_log_q(q, z) - log p(z) at the sample z of q."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return kl_log_q(q, z) - p.log_prob(z)


def has_closed_form_kl(q: Distribution, p: Distribution) -> bool:
    """Whether kl_per_image is exact for this pair (rather than a one-sample estimate)."""
    try:
        kl_divergence(q, p)
    except NotImplementedError:
        return False
    return True


class FlowPosterior(TransformedDistribution):
    """A diagonal Gaussian `base` pushed through invertible `transforms` (an IAF): sampling and
    scoring one's own samples take one pass per transform; log_prob of any other z inverts the
    transforms (D passes each for an autoregressive one)."""

    def __init__(self, base: DiagonalGaussian, transforms: list):
        super().__init__(base, transforms, validate_args=False)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def rsample_and_log_prob(self, sample_shape=(),
                             generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z)): log q(z) = log q0(z0) - sum_t log|det dz_t/dz_{t-1}|."""
        z = self.base_dist.rsample(sample_shape, generator)
        log_q = self.base_dist.log_prob(z)
        for transform in self.transforms:
            z_next = transform(z)
            log_q = log_q - transform.log_abs_det_jacobian(z, z_next)
            z = z_next
        self._last = (z, log_q)
        return z, log_q

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None):
        return self.rsample_and_log_prob(sample_shape, generator)[0]

    def sample(self, sample_shape=(), generator: torch.Generator | None = None):
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self._last is not None and z is self._last[0]:
            return self._last[1]
        return super().log_prob(z)

    @property
    def mean(self) -> torch.Tensor:
        """The base mean pushed through the flow: a code to display (E[z] has no closed form)."""
        z = self.base_dist.mu
        for transform in self.transforms:
            z = transform(z)
        return z
