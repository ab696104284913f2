"""ELBO maths against torch.distributions, and the reparameterisation's gradients."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vaelab.models import (
    VAE,
    BernoulliLikelihood,
    GaussianLikelihood,
    gaussian_kl,
    kl_divergence,
    reparameterize,
)
from vaelab.nets import MLPDecoder, MLPEncoder


def test_closed_form_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g)
    logvar = torch.randn(4, 3, generator=g) * 0.5
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros(3), torch.ones(3))

    exact = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), exact, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gaussian_kl(mu, logvar).sum(-1), exact, rtol=1e-5, atol=1e-6)

    torch.manual_seed(1)
    z = q.sample((200_000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    mc, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z))
    assert torch.all((mc - exact).abs() < 5 * stderr), (mc, exact, stderr)


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1, 4, 4, generator=g) * 3
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5), generator=g)
    expected = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), expected)


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_gaussian_log_prob_matches_torch_distributions(scale):
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(3, 3, 5, 5, generator=g)
    x = torch.rand(3, 3, 5, 5, generator=g)
    expected = Normal(mean, scale).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(GaussianLikelihood(scale=scale).log_prob(mean, x), expected)


def test_learned_gaussian_scale_is_a_parameter_and_fixed_scale_is_not():
    assert any(p.numel() == 1 for p in GaussianLikelihood(learn_scale=True).parameters())
    assert list(GaussianLikelihood(learn_scale=False).parameters()) == []


def test_reparameterize_has_the_posterior_moments():
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0]]).expand(100_000, 2)
    logvar = torch.tensor([[0.0, math.log(0.25)]]).expand(100_000, 2)
    z = reparameterize(mu, logvar)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.02, rtol=0)


def make_vae(beta: float = 1.0, shape=(1, 8, 8), latent_dim: int = 3) -> VAE:
    torch.manual_seed(0)
    return VAE(MLPEncoder(shape, latent_dim, [16]), MLPDecoder(shape, latent_dim, [16]),
               BernoulliLikelihood(), latent_dim, optimizer=torch.optim.Adam, beta=beta)


def test_gradients_reach_the_encoder_through_the_sampled_z():
    vae = make_vae()
    x = torch.bernoulli(torch.full((8, 1, 8, 8), 0.3))
    # The reconstruction term depends on the encoder only through z = mu + sigma * eps.
    vae(x)["recon"].mean().backward()
    grads = [p.grad for p in vae.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_beta_scales_only_the_kl_term():
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.3))
    losses, outs = {}, {}
    for beta in (1.0, 4.0):
        vae = make_vae(beta=beta)
        torch.manual_seed(1)
        losses[beta] = vae.training_step((x, torch.zeros(16)), 0)
        torch.manual_seed(1)
        outs[beta] = vae(x)
    torch.testing.assert_close(outs[1.0]["recon"], outs[4.0]["recon"])
    torch.testing.assert_close(outs[1.0]["kl"], outs[4.0]["kl"])
    torch.testing.assert_close(losses[4.0] - losses[1.0], 3.0 * outs[1.0]["kl"].mean())
    torch.testing.assert_close(losses[1.0], -outs[1.0]["elbo"].mean())


def test_nan_loss_raises_a_clear_error():
    vae = make_vae()
    x = torch.full((4, 1, 8, 8), float("nan"))
    with pytest.raises(FloatingPointError, match="lower model.optimizer.lr"):
        vae.training_step((x, torch.zeros(4)), 0)


def test_sample_and_reconstruct_decode_prior_draws_and_posterior_means():
    vae = make_vae()
    samples = vae.sample(6, generator=torch.Generator().manual_seed(0))
    z = torch.randn(6, vae.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, torch.sigmoid(vae.decode(z)))
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(vae.reconstruct(x), torch.sigmoid(vae.decode(vae.encode(x)[0])))
    assert not torch.equal(samples, vae.sample(6, generator=torch.Generator().manual_seed(1)))
