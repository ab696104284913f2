"""Priors p(z), one config choice each (conf/model/prior/): the fixed standard normal, a learned
mixture of Gaussians, the VampPrior and a learned flow.

A prior is a module whose `forward()` returns p(z) as a torch Distribution over codes [D]
(computed once per step: the VampPrior encodes its pseudo-inputs there), with `log_prob(z)`
[..., D] -> [...] and `sample(n, generator, temperature)` -> [n, D].
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    TransformedDistribution,
)

from vaelab.models.distributions import DiagonalGaussian, StandardNormal
from vaelab.validation import check_number

VAMP_INITS = ("random", "data")


class Prior(nn.Module):
    """Base class of the priors over `latent_dim`-dimensional codes."""

    #: the config name, model/prior=<name>
    name: str
    #: p(z) = prod_d p(z_d): a KL per latent dimension can exist (free bits, kl_per_dim)
    factorised: bool = False
    #: usable with a conditional model (model.condition): p(z) does not depend on y here, but a
    #: prior built from encoded inputs (the VampPrior) would need their conditions too
    conditional_ok: bool = True

    def __init__(self, latent_dim: int):
        super().__init__()
        check_number("model.latent_dim", latent_dim, low=1, integer=True)
        self.latent_dim = latent_dim
        # follows the module's device, so priors without parameters know where to sample
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def forward(self) -> Distribution:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z); [..., D] -> [...]."""
        return self().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n codes z ~ p(z) with the standard deviations scaled by `temperature`, the noise
        drawn on the CPU (so a seed gives the same codes on every device); -> [n, D]."""
        raise NotImplementedError

    def marginal_quantiles(self, probabilities: torch.Tensor) -> torch.Tensor | None:
        """Each dimension's marginal quantiles at `probabilities` [n] -> [n, D], where they have
        a closed form; None otherwise (figures then use the aggregate posterior's)."""
        return None

    def bind(self, encode_base: Callable[[torch.Tensor], DiagonalGaussian]) -> None:
        """Give the prior the model's image -> Gaussian q(z|x) map (used by the VampPrior)."""

    def setup_data(self, datamodule) -> None:
        """Take what the prior needs of the training data when fitting starts."""

    def _noise(self, shape, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(self._anchor.device)

    def _component_index(self, logits: torch.Tensor, n: int,
                         generator: torch.Generator | None) -> torch.Tensor:
        probs = torch.softmax(logits.detach().float().cpu(), dim=0)
        return torch.multinomial(probs, n, replacement=True, generator=generator)


class StandardNormalPrior(Prior):
    """p(z) = N(0, I), the VAE's usual fixed prior."""

    name = "standard_normal"
    factorised = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self._fixed: dict[torch.device, StandardNormal] = {}

    def forward(self) -> StandardNormal:
        # p(z) has no parameters: built once per device, not every step
        device = self._anchor.device
        if device not in self._fixed:
            self._fixed[device] = StandardNormal(self.latent_dim, device=device)
        return self._fixed[device]

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        return self._noise((n, self.latent_dim), generator) * temperature

    def marginal_quantiles(self, probabilities):
        values = Normal(0.0, 1.0).icdf(probabilities.double()).float()
        return values.view(-1, 1).expand(-1, self.latent_dim).to(self._anchor.device)


class MixtureOfGaussiansPrior(Prior):
    """p(z) = sum_k pi_k N(m_k, diag(s_k^2)): K learned components, starting near N(0, I) (means
    drawn from N(0, mean_init_std^2 I), unit scales, equal weights; `learn_weights=false` keeps
    the weights equal). Means spread as widely as N(0, I) draws (mean_init_std = 1) sit some
    sqrt(D) apart, far from where the encoder's codes start, and cost nats that a short run
    never wins back (README, "The latent model")."""

    name = "mixture_of_gaussians"

    def __init__(self, latent_dim: int, num_components: int = 10, learn_weights: bool = True,
                 mean_init_std: float = 0.1):
        super().__init__(latent_dim)
        check_number("model.prior.num_components", num_components, low=1, integer=True)
        check_number("model.prior.mean_init_std", mean_init_std, low=0)
        self.means = nn.Parameter(torch.randn(num_components, latent_dim) * mean_init_std)
        self.log_scales = nn.Parameter(torch.zeros(num_components, latent_dim))
        logits = torch.zeros(num_components)
        if learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def forward(self) -> MixtureSameFamily:
        components = Independent(Normal(self.means, self.log_scales.exp(), validate_args=False),
                                 1, validate_args=False)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False),
                                 components, validate_args=False)

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        k = self._component_index(self.logits, n, generator).to(self.means.device)
        eps = self._noise((n, self.latent_dim), generator)
        return self.means[k] + temperature * self.log_scales[k].exp() * eps


class VampPrior(Prior):
    """Tomczak & Welling (2018): p(z) = (1/K) sum_k q(z | u_k), the encoder's Gaussian posterior
    of K learned pseudo-inputs u_k (images, clipped to [0, 1] by a hardtanh as in the reference
    code). `init`: "random" draws the pixels from N(pseudo_inputs_mean, pseudo_inputs_std^2)
    (the paper's MNIST setting: 0.05, 0.01); "data" starts from random training images plus that
    noise (their use_training_data_init), chosen with `init_seed` when fitting starts.

    With a flow posterior the components are its Gaussian base q0(z|u_k) (the flow's density
    at an arbitrary z would need D passes per component)."""

    name = "vamp"
    conditional_ok = False

    def __init__(self, latent_dim: int, image_shape: Sequence[int],
                 num_pseudo_inputs: int = 500, init: str = "random",
                 pseudo_inputs_mean: float = 0.05, pseudo_inputs_std: float = 0.01,
                 init_seed: int = 0):
        super().__init__(latent_dim)
        check_number("model.prior.num_pseudo_inputs", num_pseudo_inputs, low=1, integer=True)
        check_number("model.prior.pseudo_inputs_std", pseudo_inputs_std, low=0)
        if init not in VAMP_INITS:
            raise ValueError(f"model.prior.init must be one of {VAMP_INITS}, got {init!r}")
        self.init, self.init_seed = init, init_seed
        self.pseudo_inputs_std = pseudo_inputs_std
        self.pseudo_inputs = nn.Parameter(
            torch.randn(num_pseudo_inputs, *image_shape) * pseudo_inputs_std + pseudo_inputs_mean)
        # saved in checkpoints, so a resumed run does not draw its pseudo-inputs again
        self.register_buffer("initialised", torch.tensor(init == "random"))
        self._encode_base: Callable[[torch.Tensor], DiagonalGaussian] | None = None

    def bind(self, encode_base):
        # a plain attribute, not a submodule: the encoder belongs to the VAE
        self.__dict__["_encode_base"] = encode_base

    def setup_data(self, datamodule) -> None:
        if bool(self.initialised):
            return
        generator = torch.Generator().manual_seed(self.init_seed)
        images = datamodule.images("train")
        chosen = torch.randperm(len(images), generator=generator)[:len(self.pseudo_inputs)]
        if len(chosen) < len(self.pseudo_inputs):
            raise ValueError(f"model.prior.init=data needs {len(self.pseudo_inputs)} training "
                             f"images, the data has {len(images)}: lower "
                             "model.prior.num_pseudo_inputs")
        pixels = datamodule.model_input(images[chosen.to(images.device)].cpu())
        noise = torch.randn(pixels.shape, generator=generator) * self.pseudo_inputs_std
        with torch.no_grad():
            self.pseudo_inputs.copy_(pixels + noise)
            self.initialised.fill_(True)

    def components(self) -> DiagonalGaussian:
        """q0(z | u_k) of the K pseudo-inputs, batch [K], event [D]."""
        if self._encode_base is None:
            raise RuntimeError("the VampPrior needs the model's encoder: it is bound when the "
                               "VAE is built (VAE(..., prior=VampPrior(...)))")
        return self._encode_base(nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0))

    def forward(self) -> MixtureSameFamily:
        q = self.components()
        weights = Categorical(logits=torch.zeros(len(q.mu), device=q.mu.device),
                              validate_args=False)
        return MixtureSameFamily(weights, q, validate_args=False)

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        q = self.components()
        k = self._component_index(torch.zeros(len(q.mu)), n, generator).to(q.mu.device)
        eps = self._noise((n, self.latent_dim), generator)
        return q.mu[k] + temperature * torch.exp(0.5 * q.logvar[k]) * eps


class FlowPrior(Prior):
    """p(z) = N(0, I) pushed through `num_steps` masked autoregressive steps (MAF orientation,
    Pyro's AffineAutoregressive): log p(z) is one pass per step, sampling D passes."""

    name = "flow"

    def __init__(self, latent_dim: int, num_steps: int = 2,
                 hidden_dims: Sequence[int] = (128, 128)):
        super().__init__(latent_dim)
        check_number("model.prior.num_steps", num_steps, low=1, integer=True)
        from pyro.distributions.transforms import AffineAutoregressive
        from pyro.nn import AutoRegressiveNN

        steps = []
        for t in range(num_steps):
            # alternate the variable order, so each step conditions on what the last could not
            order = torch.arange(latent_dim)
            order = order if t % 2 == 0 else order.flip(0)
            steps.append(AffineAutoregressive(
                AutoRegressiveNN(latent_dim, list(hidden_dims), permutation=order)))
        self.steps = nn.ModuleList(steps)

    def forward(self) -> TransformedDistribution:
        base = StandardNormal(self.latent_dim, device=self._anchor.device)
        # z = T^-1(u): log p(z) evaluates each T forward, the cheap direction
        return TransformedDistribution(base, [step.inv for step in reversed(self.steps)],
                                       validate_args=False)

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        u = self._noise((n, self.latent_dim), generator) * temperature
        for step in reversed(self.steps):
            u = step.inv(u)
        return u

