"""A VAE with a hierarchy of L latent layers and top-down inference (Sønderby et al. 2016's
Ladder VAE; Kingma et al. 2016's IAF-VAE; the shape NVAE and VDVAE use): a deterministic
bottom-up pass over x, then one top-down pass in which layer l has a prior p(z_l | z_>l) and a
posterior q(z_l | x, z_>l) computed on the same path. The ELBO is

    E_q[log p(x|z)] - KL(q(z_top|x) || p(z_top)) - sum_l E_q[KL(q(z_l|x, z_>l) || p(z_l|z_>l))],

each layer's KL in closed form given the sampled layers above (the top's as in the plain VAE),
logged per layer as <stage>/kl_layer_<l> (1: next to x). The nets are a ladder
(nets/ladders.py, conf/model/ladder/); the top layer's prior and posterior are the ordinary
components (conf/model/prior/, conf/model/posterior/), so a VampPrior over the top layer mixes
the top layer's Gaussian posteriors of its pseudo-inputs. With one layer the model is the VAE
(models/vae.py), number for number.
"""

from collections.abc import Callable

import torch

from vaelab.models.distributions import DiagonalGaussian
from vaelab.models.hierarchy import (
    Choose,
    Descent,
    HierarchicalPosterior,
    HierarchicalPrior,
    HierarchicalPriorDistribution,
    Layer,
)
from vaelab.models.kl_schedules import KLSchedule
from vaelab.models.likelihoods import Likelihood
from vaelab.models.objectives import Objective
from vaelab.models.posteriors import DiagonalGaussianPosterior, Posterior
from vaelab.models.priors import Prior, StandardNormalPrior
from vaelab.models.vae import VAE, _repeat, likelihood_params


class HierarchicalVAE(VAE):
    """A ladder's bottom-up encoder and top-down decoder, the top layer's posterior and prior
    components, and a likelihood. `latent_dim` is the size of the whole code (every layer)."""

    hierarchical = True
    not_hyperparameters = (*VAE.not_hyperparameters, "ladder")

    def __init__(self, ladder, likelihood: Likelihood, latent_dim: int,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 posterior: Posterior | None = None, prior: Prior | None = None,
                 top_latent_dim: int | None = None, condition: str | None = None,
                 condition_dim: int = 0, beta: float = 1.0, scheduler: Callable | None = None,
                 scheduler_monitor: str = "val/elbo",
                 kl_schedule: Callable[..., KLSchedule] | None = None,
                 objective: Callable[..., Objective] | None = None):
        """`ladder` (nets/ladders.py) gives the layers' sizes; `posterior` and `prior` are the
        top layer's (default: a diagonal Gaussian and N(0, I)); `top_latent_dim`, if given,
        must be the top layer's size (the configs pass it to the components)."""
        sizes = tuple(ladder.layer_sizes)
        if latent_dim != sum(sizes):
            raise ValueError(f"model.latent_dim={latent_dim} is not the {sum(sizes)} codes of the "
                             f"ladder's layers {list(sizes)}: leave it to the config's resolver")
        if top_latent_dim is not None and top_latent_dim != sizes[-1]:
            raise ValueError(f"model.top_latent_dim={top_latent_dim} differs from the ladder's "
                             f"top layer ({sizes[-1]})")
        self._sizes = sizes
        posterior = posterior if posterior is not None else DiagonalGaussianPosterior(sizes[-1])
        prior = prior if prior is not None else StandardNormalPrior(sizes[-1])
        # the components are checked and bound as a flat VAE's would be, then the prior wrapped
        super().__init__(ladder.encoder, ladder.decoder, likelihood, latent_dim, optimizer,
                         posterior, prior, condition, condition_dim, beta, scheduler,
                         scheduler_monitor, kl_schedule, objective)
        self.prior = HierarchicalPrior(self.prior, latent_dim)
        self.prior.attach(self)

    def _check_latent_sizes(self, latent_dim, posterior, prior) -> None:
        for key, component in (("model.posterior", posterior), ("model.prior", prior)):
            if component.latent_dim != self._sizes[-1]:
                raise ValueError(
                    f"{key}.latent_dim={component.latent_dim} is not the top layer's size "
                    f"{self._sizes[-1]}: set it to ${{model.top_latent_dim}}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def num_layers(self) -> int:
        return len(self._sizes)

    def split_layers(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Codes [..., D] as the layers' codes, bottom first: [..., D_0], ..., [..., D_top]."""
        return list(z.split(self._sizes, dim=-1))

    # -- the top-down pass ---------------------------------------------------------------------
    def descend(self, top: Layer, choose: Choose, features: list[torch.Tensor] | None = None,
                y: torch.Tensor | None = None, num_samples: int | None = None) -> Descent:
        """The top-down pass from the top layer's codes (`top`, N of them): each lower layer's
        prior p(z_l | z_>l), its posterior q(z_l | x, z_>l) where bottom-up `features` (per
        layer, B images) are given, its codes from `choose`, and the likelihood's parameters
        for conditions y [B, C]. With num_samples K, N = K * B, sample-major."""
        if num_samples is not None:
            features = None if features is None else [_repeat(f, num_samples) for f in features]
            y = None if y is None else _repeat(y, num_samples)
        path = self.decoder
        h = path.absorb(self.num_layers - 1, None, top.z)
        layers = [top]
        for layer in reversed(range(self.num_layers - 1)):
            h, p = path.prior(layer, h)
            p = DiagonalGaussian(*p)
            q = None if features is None else \
                DiagonalGaussian(*path.posterior(layer, h, features[layer], (p.mu, p.logvar)))
            z = choose(layer, p, q)
            layers.append(Layer(z, p, q))
            h = path.absorb(layer, h, z)
        return Descent(layers[::-1], path.output(h, y))

    # -- the model's interface -----------------------------------------------------------------
    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> HierarchicalPosterior:
        """q(z|x) over the whole code: the bottom-up pass now, the top-down one per draw."""
        features = self._encode(x, y)
        return HierarchicalPosterior(self, features, y, self.posterior_family(features[-1]))

    def posterior_base(self, x: torch.Tensor):
        """The Gaussian part of the top layer's q(z_top|x), what a VampPrior mixes."""
        return self.posterior_family.base(self._encode(x, None)[-1])

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters of p(x|z) for codes of every layer; [B, D] -> [B, C', H, W]."""
        given = self.split_layers(z)
        return self.descend(Layer(given[-1], None), lambda layer, p, q: given[layer],
                            y=y).params

    @torch.no_grad()
    def layer_samples(self, x: torch.Tensor, keep: int, generator: torch.Generator | None = None,
                      temperature: float = 1.0, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes [B, D] whose top `keep` layers are the posterior means of images x [B, ...]
        (each given the means above) and whose other layers are drawn from the prior given
        those (spread times `temperature`): what each layer holds."""
        features = self._encode(x, y)
        q_top = self.posterior_family(features[-1])
        top = q_top.mean if keep > 0 else self.prior.top.sample(len(x), generator, temperature)
        from_prior = self.prior.drawing(generator, temperature)

        def choose(layer, p, q):
            return q.mean if layer >= self.num_layers - keep else from_prior(layer, p, q)
        return self.descend(Layer(top, None), choose, features, y).code()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        q = self.posterior(x, y)
        p_top = self.prior.top()
        descent = q.draw(top_prior=p_top)
        recon = self.likelihood.nll(self._checked_params(descent.params, x), x)
        kl_per_layer = descent.kl_per_layer()
        kl = kl_per_layer.sum(dim=1)
        return {"recon": recon, "kl": kl, "elbo": -(recon + kl),
                "kl_per_dim": descent.kl_per_dim(), "kl_per_layer": kl_per_layer,
                "z": descent.code(), "q": q, "p": HierarchicalPriorDistribution(self, p_top),
                "y": y}

    def log_importance_weights(self, x, y, q: HierarchicalPosterior, num_samples: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log w = log p(x|z) + log p(z) - log q(z|x) over every layer, for K fresh draws of
        the whole hierarchy; -> [K, B]. The K * B top-down passes run as one batch."""
        k, b = num_samples, x.shape[0]
        descent = q.draw(k, generator)
        log_px_z = self.likelihood.log_prob(likelihood_params(descent.params),
                                            _repeat(x, k)).view(k, b)
        return log_px_z + descent.log_prior().view(k, b) - descent.log_posterior().view(k, b)
