"""The importance-weighted bound: K=1 is the ELBO, it tightens with K, exact when q is exact."""

import math
from functools import partial

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal

from helpers.models import binary_images, tiny_vae
from vaelab.models import VAE, GaussianLikelihood, IAFPosterior, VampPrior
from vaelab.models.iwae import (
    importance_weighted_bounds,
    importance_weighted_log_likelihood,
    iwae_bound,
)
from vaelab.models.kl_schedules import LinearWarmup
from vaelab.models.objectives import IWAE
from vaelab.nets import MLPDecoder, MLPEncoder
from vaelab.train import train

SHAPE = (1, 8, 8)


def small_vae(latent_dim: int = 4, **components) -> VAE:
    return tiny_vae(latent_dim, hidden=(32,), **components)


@torch.no_grad()
def test_k1_bound_is_the_single_sample_elbo():
    model, x = small_vae(), binary_images()
    q = model.posterior(x)
    log_w = model.log_importance_weights(x, None, q, 1, torch.Generator().manual_seed(1))
    # That z again, scored by torch.distributions rather than our own densities.
    z = q.mu + torch.exp(0.5 * q.logvar) * torch.randn(q.mu.shape,
                                                       generator=torch.Generator().manual_seed(1))
    log_q = Normal(q.mu, torch.exp(0.5 * q.logvar)).log_prob(z).sum(1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(1)
    log_px = torch.distributions.Bernoulli(logits=model.decode(z)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(iwae_bound(log_w), log_px + log_p - log_q, rtol=0, atol=1e-4)


@pytest.mark.parametrize("components", [
    {}, {"prior": VampPrior(4, SHAPE, num_pseudo_inputs=7)},
    {"posterior": IAFPosterior(4, hidden_dims=[16])}])
@torch.no_grad()
def test_the_bound_with_k_1_is_the_elbo_estimate_and_grows_with_k(components):
    model, x = small_vae(**components), binary_images(100)
    # K = 1: the ELBO of the same sample; its mean is the one-sample ELBO's
    log_px, elbo_k = importance_weighted_bounds(model, x, 1,
                                                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_px, elbo_k)
    torch.manual_seed(0)
    one_sample = model(x)["elbo"].mean().item()
    assert log_px.mean().item() == pytest.approx(one_sample, abs=1.0)
    bounds = [importance_weighted_log_likelihood(
        model, x, k, generator=torch.Generator().manual_seed(3)).mean().item()
        for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2], bounds


@torch.no_grad()
def test_bound_rises_with_k_and_chunking_changes_nothing():
    model, x = small_vae(), binary_images(200)
    means = []
    for k in (1, 10, 100):
        torch.manual_seed(3)
        means.append(importance_weighted_log_likelihood(model, x, k).mean().item())
    assert means[0] <= means[1] <= means[2]
    # Samples drawn in chunks are the same draws as one big batch: identical estimates.
    torch.manual_seed(3)
    pixels = x[0].numel()  # a Bernoulli likelihood: one parameter per pixel
    chunked = importance_weighted_log_likelihood(model, x, 100, max_values=len(x) * 7 * pixels)
    assert chunked.mean().item() == pytest.approx(means[2], abs=1e-4)
    # ... and so are images in chunks (fewer values than one image's K samples)
    torch.manual_seed(3)
    both = importance_weighted_log_likelihood(model, x, 100, max_values=50 * pixels)
    assert both.mean().item() != pytest.approx(means[2], abs=1e-4)  # other draws per image ...
    assert both.mean().item() == pytest.approx(means[2], abs=1.0)  # ... the same bound


class LinearEncoder(nn.Module):
    """The exact posterior of the linear-Gaussian model below as the diagonal Gaussian's
    features (mu, logvar); [B, 1, 2, 3] -> [B, 4]."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, sigma: float):
        super().__init__()
        scale2 = (w * w).sum(0)  # W has orthogonal columns, so W^T W is diagonal
        self.register_buffer("proj", w / (scale2 + sigma**2))
        self.register_buffer("b", b)
        self.register_buffer("logvar", torch.log(sigma**2 / (scale2 + sigma**2)))

    def forward(self, x):
        mu = (x.flatten(1) - self.b) @ self.proj
        return torch.cat([mu, self.logvar.expand_as(mu)], dim=1)


class LinearDecoder(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)
        self.register_buffer("b", b)

    def forward(self, z):
        return (z @ self.w.T + self.b).view(-1, 1, 2, 3)


@torch.no_grad()
def test_bound_equals_log_likelihood_when_the_posterior_is_exact():
    # p(z) = N(0, I_2), p(x|z) = N(Wz + b, sigma^2 I_6), so p(x) = N(b, W W^T + sigma^2 I).
    torch.set_default_dtype(torch.float64)
    try:
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(6, 2, generator=g))
        w, b, sigma = q * torch.tensor([2.0, 0.7]), torch.randn(6, generator=g), 0.5
        model = VAE(LinearEncoder(w, b, sigma), LinearDecoder(w, b),
                    GaussianLikelihood(scale=sigma), 2, partial(torch.optim.SGD, lr=0.1))
        x = torch.randn(50, 1, 2, 3, generator=g) * 2
        exact = MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(6)).log_prob(x.flatten(1))
        for k in (1, 7):
            estimate = importance_weighted_log_likelihood(model, x, k)
            # Every importance weight equals p(x): only rounding separates them.
            torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-8)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.integration
def test_iwae_objective_trains_and_bounds_the_elbo(make_cfg):
    metrics = train(make_cfg(["model/objective=iwae", "model.objective.num_samples=4",
                              "trainer.max_epochs=1", "logger=csv", "test=false"]))
    for name in ("train/loss", "train/elbo", "val/loss", "val/elbo"):
        assert math.isfinite(metrics[name])
    # -loss is the 4-sample bound: on average above the 1-sample ELBO of the same batches.
    assert -metrics["val/loss"] > metrics["val/elbo"]


@torch.no_grad()
def test_iwae_objective_is_minus_the_bound_from_fresh_samples():
    model = small_vae(objective=partial(IWAE, num_samples=7))
    x = binary_images()
    torch.manual_seed(5)
    out = model(x)
    loss = model.objective(model, x, out, model.global_step).loss
    torch.manual_seed(5)
    model(x)  # the same forward draws, then the bound's 7 samples per image again
    log_w = model.log_importance_weights(x, None, out["q"], 7)
    torch.testing.assert_close(loss, -iwae_bound(log_w))


@pytest.mark.parametrize("settings, problem", [
    ({"objective": partial(IWAE, num_samples=4), "beta": 4.0},
     r"model.beta=4.0 has no effect with model/objective=iwae"),
    ({"objective": IWAE, "kl_schedule": partial(LinearWarmup, warmup_steps=10)},
     r"model/objective=iwae does not schedule the KL term.*model/kl_schedule=constant"),
    ({"objective": partial(IWAE, num_samples=0)}, r"model.objective.num_samples=0: give a whole"),
])
def test_bad_objective_settings_are_refused(settings, problem):
    with pytest.raises(ValueError, match=problem):
        VAE(MLPEncoder(SHAPE, 4, [8]), MLPDecoder(SHAPE, 2, [8]), GaussianLikelihood(), 2,
            partial(torch.optim.Adam, lr=1e-3), **settings)
