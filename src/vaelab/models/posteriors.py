"""Posterior families q(z|x), one config choice each (conf/model/posterior/): the encoder's output
features [B, F] become a distribution over codes [B, D].

Like a likelihood for the decoder, a posterior says how many features it reads
(`param_features`), and the encoder configs ask it:
`out_features: ${vaelab.posterior_features:${model.posterior},${model.latent_dim}}`.
"""

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.models.distributions import DiagonalGaussian, FlowPosterior
from vaelab.validation import check_number


class Posterior(nn.Module):
    """Base class: `forward(features [B, F])` -> q(z|x), `base(features)` -> its Gaussian part."""

    #: the config name, model/posterior=<name>
    name: str
    #: q(z|x) is a diagonal Gaussian: its density at other images' codes is cheap (beta-TCVAE)
    #: and its covariance known (DIP-VAE)
    gaussian: bool = False
    #: q(z|x) = prod_d q(z_d|x): with a factorised prior, a KL per dimension exists
    factorised: bool = False

    def __init__(self, latent_dim: int, logvar_range: Sequence[float] | None = None,
                 path_gradient: bool = False):
        super().__init__()
        check_number("model.latent_dim", latent_dim, low=1, integer=True)
        if logvar_range is not None and not logvar_range[0] < logvar_range[1]:
            raise ValueError(f"model.posterior.logvar_range must be [low, high] with low < high, "
                             f"got {list(logvar_range)}")
        self.latent_dim = latent_dim
        self.logvar_range = None if logvar_range is None else tuple(logvar_range)
        self.path_gradient = path_gradient

    @classmethod
    def param_features(cls, latent_dim: int, **options) -> int:
        """Encoder output features needed for `latent_dim`-dimensional codes."""
        return 2 * latent_dim

    def base(self, features: torch.Tensor) -> DiagonalGaussian:
        """The diagonal Gaussian read from the first 2D features: (mu, logvar), logvar clipped
        to `logvar_range` if set (the VampPrior paper's hardtanh(-6, 2))."""
        if features.shape[1] > 2 * self.latent_dim:  # a flow's context follows
            features = features[:, :2 * self.latent_dim]
        mu, logvar = features.chunk(2, dim=1)
        if self.logvar_range is not None:
            logvar = nn.functional.hardtanh(logvar, *self.logvar_range)
        return DiagonalGaussian(mu, logvar, self.path_gradient)


class DiagonalGaussianPosterior(Posterior):
    """q(z|x) = N(mu(x), diag(sigma^2(x))), the encoder's 2D features being (mu, log sigma^2).
    With a prior that has no closed-form KL against it, `path_gradient` (default) takes the
    one-sample KL estimate's gradient through the sample only (DiagonalGaussian.kl_log_prob)."""

    def __init__(self, latent_dim: int, logvar_range: Sequence[float] | None = None,
                 path_gradient: bool = True):
        super().__init__(latent_dim, logvar_range, path_gradient)

    name = "diagonal_gaussian"
    gaussian = True
    factorised = True

    def forward(self, features: torch.Tensor) -> DiagonalGaussian:
        return self.base(features)


class IAFPosterior(Posterior):
    """Kingma et al. (2016): z_0 ~ N(mu(x), sigma^2(x)), then `num_steps` inverse autoregressive
    steps z_t = s_t * z_{t-1} + (1 - s_t) * m_t, with (m_t, logit s_t) from a MADE over
    z_{t-1} and a context h(x) (Pyro's ConditionalAffineAutoregressive, stable=True: the paper's
    eq. 14, s_t = sigmoid(logit + sigmoid_bias)); the variable order is reversed between steps.
    log q(z|x) = log N(z_0) - sum_t sum_d log s_t,d.

    The encoder supplies 2D + context_dim features: (mu, log sigma^2, h)."""

    name = "iaf"

    def __init__(self, latent_dim: int, num_steps: int = 2, context_dim: int | None = None,
                 hidden_dims: Sequence[int] = (320, 320), sigmoid_bias: float = 2.0,
                 logvar_range: Sequence[float] | None = None):
        super().__init__(latent_dim, logvar_range)
        check_number("model.posterior.num_steps", num_steps, low=1, integer=True)
        context_dim = latent_dim if context_dim is None else context_dim
        check_number("model.posterior.context_dim", context_dim, low=1, integer=True)
        if min(hidden_dims, default=0) < latent_dim:
            raise ValueError(f"model.posterior.hidden_dims={list(hidden_dims)}: a MADE needs "
                             f"hidden layers at least as wide as the latent ({latent_dim})")
        from pyro.distributions.transforms import ConditionalAffineAutoregressive
        from pyro.nn import ConditionalAutoRegressiveNN

        self.context_dim = context_dim
        steps = []
        for t in range(num_steps):
            order = torch.arange(latent_dim)
            order = order if t % 2 == 0 else order.flip(0)
            made = ConditionalAutoRegressiveNN(latent_dim, context_dim, list(hidden_dims),
                                               permutation=order)
            steps.append(ConditionalAffineAutoregressive(made, stable=True,
                                                         sigmoid_bias=sigmoid_bias))
        self.steps = nn.ModuleList(steps)

    @classmethod
    def param_features(cls, latent_dim: int, context_dim: int | None = None, **options) -> int:
        return 2 * latent_dim + (latent_dim if context_dim is None else context_dim)

    def forward(self, features: torch.Tensor) -> FlowPosterior:
        context = features[:, 2 * self.latent_dim:]
        return FlowPosterior(self.base(features), [step.condition(context) for step in self.steps])
