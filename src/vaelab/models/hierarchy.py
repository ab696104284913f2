"""The distributions of a latent hierarchy z = (z_0 .. z_L-1), z_0 next to x, z_L-1 the top:

    p(z) = p(z_top) prod_l p(z_l | z_>l),    q(z|x) = q(z_top | x) prod_l q(z_l | x, z_>l),

each conditional a diagonal Gaussian computed on the top-down path (nets/ladders.py), the top
layer's the model's prior and posterior components. Codes are the layers' codes concatenated,
bottom first: [N, D_0 + ... + D_L-1]. A `Descent` is one top-down pass (its codes, each layer's
distributions and the likelihood's parameters); `HierarchicalPosterior` and `HierarchicalPrior`
give q(z|x) and p(z) the interface of a flat model's (rsample, log_prob, mean; sample).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch.distributions import Distribution, kl_divergence

from vaelab.models.distributions import DiagonalGaussian, kl_log_q, kl_per_dimension
from vaelab.models.priors import Prior


@dataclass
class Layer:
    """One layer of a top-down pass over N codes."""

    #: the layer's codes, [N, D_l]
    z: torch.Tensor
    #: p(z_l | z_>l) (the top's: the prior component's p(z_top)); None where not computed
    p: Distribution | None
    #: q(z_l | x, z_>l); None where no image guides the pass
    q: Distribution | None = None
    #: the codes as q drew them, where z is their flattened view (the top's K samples of B
    #: images, [K, B, D_l]): a flow scores its own samples from what sampling computed
    drawn: torch.Tensor | None = None

    def log_q(self) -> torch.Tensor:
        """log q(z_l | x, z_>l); [N]."""
        return self.q.log_prob(self._q_codes()).reshape(-1)

    def _q_codes(self) -> torch.Tensor:
        """The codes in the shape q scores them: as drawn where they were, else z."""
        return self.z if self.drawn is None else self.drawn

    @cached_property
    def kl(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(KL(q || p) per code [N], per dimension [N, D_l] where it exists): in closed form
        where the pair has one, else log q(z) - log p(z) at z; for a layer below the top, the
        KL of the conditionals given the sampled layers above. The top's q has one batch of B
        images for N = K * B codes: a closed form is repeated K times."""
        per_dim = kl_per_dimension(self.q, self.p)
        if per_dim is not None:
            per_dim = self._per_code(per_dim)
            return per_dim.sum(dim=-1), per_dim
        try:
            return self._per_code(kl_divergence(self.q, self.p)), None
        except NotImplementedError:  # the one-sample estimate, with q's gradient choice
            return kl_log_q(self.q, self._q_codes()).reshape(-1) - self.p.log_prob(self.z), None

    def _per_code(self, values: torch.Tensor) -> torch.Tensor:
        """Values of q's B images [B, ...] for the N = K * B codes (sample-major); [N, ...]."""
        k = len(self.z) // len(values)
        return values if k == 1 else values.expand(k, *values.shape).flatten(0, 1)


@dataclass
class Descent:
    """One top-down pass: its layers, bottom first, and the likelihood's parameters."""

    layers: list[Layer]
    params: torch.Tensor

    def code(self) -> torch.Tensor:
        """The codes of all layers, concatenated bottom first; [N, D]."""
        return torch.cat([layer.z for layer in self.layers], dim=-1)

    def log_prior(self) -> torch.Tensor:
        """log p(z) = sum over layers of log p(z_l | z_>l); [N]."""
        return torch.stack([layer.p.log_prob(layer.z) for layer in self.layers]).sum(0)

    def log_posterior(self) -> torch.Tensor:
        """log q(z|x) = sum over layers of log q(z_l | x, z_>l); [N]."""
        return torch.stack([layer.log_q() for layer in self.layers]).sum(0)

    def kl_per_layer(self) -> torch.Tensor:
        """KL of each layer (Layer.kl), bottom first; [N, L]. Their sum is an unbiased estimate of
        KL(q(z|x) || p(z)), exact in each layer given the ones above."""
        return torch.stack([layer.kl[0] for layer in self.layers], dim=-1)

    def kl_per_dim(self) -> torch.Tensor | None:
        """The per-dimension KL of every layer, concatenated [N, D]; None unless every layer
        has one (the top's prior and posterior factorise)."""
        per_dim = [layer.kl[1] for layer in self.layers]
        return None if any(k is None for k in per_dim) else torch.cat(per_dim, dim=-1)


#: how a pass picks layer l's codes: choose(layer, p(z_l | z_>l), q(z_l | x, z_>l) or None)
Choose = Callable[[int, DiagonalGaussian, DiagonalGaussian | None], torch.Tensor]


class HierarchicalPosterior:
    """q(z|x) of a batch of B images: the bottom-up features computed once, and q(z_top | x)
    from the posterior component; each draw runs the model's top-down pass."""

    def __init__(self, model, features: list[torch.Tensor], y: torch.Tensor | None,
                 top: Distribution):
        self.model, self.features, self.y, self.top = model, features, y, top
        #: the last draw (sample/rsample), whose per-layer KL kl_per_dimension reports
        self.last: Descent | None = None
        self._mean: torch.Tensor | None = None

    def draw(self, num_samples: int | None = None, generator: torch.Generator | None = None,
             top_prior: Distribution | None = None) -> Descent:
        """A top-down pass with every layer sampled from q: one code per image (N = B), or
        num_samples per image (N = K * B, sample-major); `top_prior`: p(z_top) if already
        computed this step."""
        shape = () if num_samples is None else (num_samples,)
        drawn = self.top.rsample(shape, generator)
        z = drawn if num_samples is None else drawn.flatten(0, 1)
        p = top_prior if top_prior is not None else self.model.prior.top()
        self.last = self.model.descend(
            Layer(z, p, self.top, drawn if num_samples is not None else None),
            lambda layer, p_l, q_l: q_l.rsample(generator=generator),
            self.features, self.y, num_samples)
        return self.last

    def rsample(self, sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes z ~ q(z|x); -> [*sample_shape, B, D]."""
        count = int(torch.Size(sample_shape).numel())
        code = self.draw(count if sample_shape else None, generator).code()
        return code.view(*sample_shape, -1, code.shape[-1])

    def sample(self, sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) of any codes z [..., B, D], each layer's conditional at the given layers
        above; -> [..., B]."""
        lead = z.shape[:-2]
        k = int(lead.numel()) if lead else None
        given = self.model.split_layers(z.reshape(-1, z.shape[-1]))
        top = Layer(given[-1], None, self.top, given[-1].view(*lead, -1, given[-1].shape[-1]))
        descent = self.model.descend(top, lambda layer, p_l, q_l: given[layer], self.features,
                                     self.y, k)
        return descent.log_posterior().view(*lead, -1)

    @property
    def mean(self) -> torch.Tensor:
        """A code to display: each layer's posterior mean given the means above; [B, D]."""
        if self._mean is None:
            self._mean = self.model.descend(Layer(self.top.mean, None),
                                            lambda layer, p_l, q_l: q_l.mean,
                                            self.features, self.y).code()
        return self._mean

    def kl_per_dimension(self, p=None) -> torch.Tensor | None:
        """The per-dimension KL of the last draw (Descent.kl_per_dim)."""
        return None if self.last is None else self.last.kl_per_dim()

    def kl_per_layer(self, p=None) -> torch.Tensor:
        """The KL of each layer at the last draw; [B, L]."""
        if self.last is None:
            self.draw()
        return self.last.kl_per_layer()


class HierarchicalPriorDistribution:
    """p(z) of a hierarchical model at one step: `log_prob(z)` of codes [..., D] -> [...]."""

    def __init__(self, model, top: Distribution):
        self.model, self.top = model, top

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        given = self.model.split_layers(z.reshape(-1, z.shape[-1]))
        descent = self.model.descend(Layer(given[-1], self.top),
                                     lambda layer, p_l, q_l: given[layer])
        return descent.log_prior().view(z.shape[:-1])


class HierarchicalPrior(Prior):
    """p(z) = p(z_top) prod_l p(z_l | z_>l): `top` is the prior component (any of
    conf/model/prior/) over the top layer, the conditionals come from the model's top-down path
    (`attach`). Sampling draws each layer's noise on the CPU, its spread times `temperature`."""

    name = "hierarchical"

    def __init__(self, top: Prior, latent_dim: int):
        super().__init__(latent_dim)
        self.top = top
        self.conditional_ok = top.conditional_ok
        self.__dict__["_model"] = None

    def attach(self, model) -> None:
        """The model whose top-down path gives the conditionals (a plain attribute, not a
        submodule: the path belongs to the model)."""
        self.__dict__["_model"] = model

    def forward(self) -> HierarchicalPriorDistribution:
        return HierarchicalPriorDistribution(self._model, self.top())

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        top = Layer(self.top.sample(n, generator, temperature), None)
        return self._model.descend(top, self.drawing(generator, temperature)).code()

    def drawing(self, generator: torch.Generator | None, temperature: float) -> Choose:
        """A Choose that draws z_l ~ p(z_l | z_>l) with its spread times `temperature`."""
        def choose(layer, p, q):
            eps = self._noise(p.mu.shape, generator).to(p.mu.dtype)
            return p.mu + temperature * torch.exp(0.5 * p.logvar) * eps
        return choose

    def bind(self, encode_base) -> None:
        self.top.bind(encode_base)

    def setup_data(self, datamodule) -> None:
        self.top.setup_data(datamodule)
