"""Priors and posteriors against independent computations: direct sums over components,
autograd's Jacobians, torch.distributions' closed forms and Monte Carlo."""

import math

import pytest
import torch
from torch.distributions import Normal

from helpers.models import binary_images, tiny_vae
from vaelab.models import (
    DiagonalGaussian,
    FlowPrior,
    IAFPosterior,
    MixtureOfGaussiansPrior,
    StandardNormalPrior,
    VampPrior,
    kl_per_dimension,
    kl_per_image,
)
from vaelab.models.distributions import has_closed_form_kl


def normal_log_density(z, mean, var):
    """log N(z; mean, diag(var)) summed over the last dim, written out."""
    return (-0.5 * ((z - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(-1)


def test_diagonal_gaussian_density_and_samples():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    q = DiagonalGaussian(mu, logvar)
    z = torch.randn(7, 4, 3, generator=g)
    torch.testing.assert_close(q.log_prob(z), normal_log_density(z, mu, logvar.exp()))
    a = q.rsample((5,), generator=torch.Generator().manual_seed(1))
    b = q.rsample((5,), generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 4, 3) and torch.equal(a, b)
    many = DiagonalGaussian(mu[:1], logvar[:1]).sample((100_000,))
    torch.testing.assert_close(many.mean(0), mu[:1], atol=0.03, rtol=0)
    torch.testing.assert_close(many.var(0), logvar[:1].exp(), atol=0.05, rtol=0.05)


def test_diagonal_gaussian_builds_its_normal_only_when_one_is_needed():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    q = DiagonalGaussian(mu, logvar)
    z = q.rsample()
    q.log_prob(z), kl_per_dimension(q, StandardNormalPrior(3)())  # what a training step asks
    assert "base_dist" not in vars(q)
    normal = Normal(mu, torch.exp(0.5 * logvar))
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    torch.testing.assert_close(q.stddev, normal.stddev)
    torch.testing.assert_close(q.entropy(), normal.entropy().sum(-1))


def test_closed_form_kl_matches_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.5
    q, p = DiagonalGaussian(mu, logvar), StandardNormalPrior(3)()
    assert has_closed_form_kl(q, p)
    exact = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)),
                                              Normal(0.0, 1.0))
    torch.testing.assert_close(kl_per_dimension(q, p), exact, rtol=1e-5, atol=1e-6)
    z = q.rsample()
    torch.testing.assert_close(kl_per_image(q, p, z), exact.sum(1), rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    samples = q.sample((200_000,))
    log_ratio = q.log_prob(samples) - p.log_prob(samples)
    mc, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(samples))
    assert torch.all((mc - exact.sum(1)).abs() < 5 * stderr), (mc, exact.sum(1), stderr)


def test_mixture_prior_log_prob_is_the_direct_sum_over_components():
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(3, num_components=4)
    with torch.no_grad():
        prior.log_scales.normal_(0, 0.3)
        prior.logits.normal_()
    z = torch.randn(10, 3)
    weights = torch.softmax(prior.logits, 0)
    direct = torch.log(sum(weights[k] * normal_log_density(
        z, prior.means[k], prior.log_scales[k].exp() ** 2).exp() for k in range(4)))
    torch.testing.assert_close(prior.log_prob(z), direct, rtol=1e-5, atol=1e-5)
    assert prior.marginal_quantiles(torch.tensor([0.5])) is None
    q = DiagonalGaussian(torch.zeros(10, 3), torch.zeros(10, 3))
    assert not has_closed_form_kl(q, prior()) and kl_per_dimension(q, prior()) is None


def test_mixture_samples_follow_the_weights_and_temperature():
    prior = MixtureOfGaussiansPrior(2, num_components=2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-10.0, 0.0], [10.0, 0.0]]))
        prior.logits.copy_(torch.log(torch.tensor([0.2, 0.8])))
        prior.log_scales.zero_()
    z = prior.sample(20_000, torch.Generator().manual_seed(0))
    assert (z[:, 0] > 0).float().mean().item() == pytest.approx(0.8, abs=0.02)
    cold = prior.sample(20_000, torch.Generator().manual_seed(0), temperature=0.1)
    assert cold[:, 1].std().item() == pytest.approx(0.1, rel=0.05)


def test_vamp_prior_log_prob_is_the_mean_of_the_pseudo_inputs_posteriors():
    vae = tiny_vae(prior=VampPrior(3, (1, 8, 8), num_pseudo_inputs=6))
    prior = vae.prior
    with torch.no_grad():
        prior.pseudo_inputs.uniform_(-0.5, 1.5)  # some outside [0, 1]: the hardtanh clips
    z = torch.randn(9, 3)
    # Encode each pseudo-input by hand: clip to [0, 1], the encoder, (mu, logvar).
    features = vae.encoder(prior.pseudo_inputs.clamp(0, 1))
    mu, logvar = features.chunk(2, dim=1)
    per_component = torch.stack([normal_log_density(z, mu[k], logvar[k].exp())
                                 for k in range(6)], dim=1)  # [9, 6]
    direct = torch.log(per_component.exp().mean(dim=1))
    torch.testing.assert_close(prior.log_prob(z), direct, rtol=1e-5, atol=1e-5)
    # samples come from the components: near one of the pseudo-inputs' means
    s = prior.sample(50, torch.Generator().manual_seed(0), temperature=0.0)
    assert (s[:, None] - mu.detach()[None]).abs().sum(-1).min(dim=1).values.max() < 1e-6


def test_vamp_prior_can_start_from_training_images_once():
    class Data:
        def images(self, split):
            return torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 8, 8) * 10

        def model_input(self, images):
            return images.float() / 255

    vae = tiny_vae(prior=VampPrior(3, (1, 8, 8), num_pseudo_inputs=4, init="data",
                                   pseudo_inputs_std=0.0))
    vae.prior.setup_data(Data())
    values = vae.prior.pseudo_inputs[:, 0, 0, 0] * 255 / 10
    assert torch.allclose(values, values.round(), atol=1e-4) and len(values.unique()) == 4
    state = vae.prior.state_dict()
    assert bool(state["initialised"])
    again = VampPrior(3, (1, 8, 8), num_pseudo_inputs=4, init="data")
    again.load_state_dict(state)
    again.setup_data(Data())  # a resumed run keeps its learned pseudo-inputs
    torch.testing.assert_close(again.pseudo_inputs, vae.prior.pseudo_inputs)
    with pytest.raises(ValueError, match="num_pseudo_inputs"):
        VampPrior(3, (1, 8, 8), num_pseudo_inputs=50, init="data").setup_data(Data())


def jacobian_log_det(f, x: torch.Tensor) -> torch.Tensor:
    """log|det df/dx| of a map of single vectors, from autograd's full Jacobian."""
    return torch.linalg.slogdet(torch.autograd.functional.jacobian(f, x))[1]


def test_iaf_log_q_uses_autograds_log_det():
    torch.manual_seed(0)
    d, c = 3, 2
    posterior = IAFPosterior(d, num_steps=3, context_dim=c, hidden_dims=[8, 8])
    features = torch.randn(1, 2 * d + c)
    q = posterior(features)
    z, log_q = q.rsample_and_log_prob(generator=torch.Generator().manual_seed(1))
    z0 = q.base_dist.rsample(generator=torch.Generator().manual_seed(1))

    def flow(v):
        for t in q.transforms:
            v = t(v)
        return v

    torch.testing.assert_close(flow(z0), z)
    log_det = jacobian_log_det(lambda v: flow(v[None])[0], z0[0])
    torch.testing.assert_close(log_q, q.base_dist.log_prob(z0) - log_det, rtol=1e-5, atol=1e-5)
    # scoring a z the flow did not just draw inverts it, and agrees
    torch.testing.assert_close(q.log_prob(z.clone()), log_q, rtol=1e-4, atol=1e-4)
    assert kl_per_dimension(q, StandardNormalPrior(d)()) is None
    assert posterior.param_features(d, context_dim=c) == 2 * d + c


def test_iaf_is_autoregressive_in_the_reversed_order_of_each_step():
    torch.manual_seed(0)
    posterior = IAFPosterior(4, num_steps=1, context_dim=2, hidden_dims=[16])
    q = posterior(torch.randn(1, 10))
    jac = torch.autograd.functional.jacobian(lambda v: q.transforms[0](v[None])[0],
                                             torch.randn(4))
    assert torch.allclose(jac.triu(1), torch.zeros(4, 4))  # z_t,i depends on z_{t-1},j<=i


def test_flow_prior_density_is_the_change_of_variables():
    torch.manual_seed(0)
    prior = FlowPrior(3, num_steps=2, hidden_dims=[8])
    z = torch.randn(3)

    def to_base(v):  # the density direction: each step forward, last step first
        for step in prior.steps:
            v = step(v[None])[0]
        return v

    u = to_base(z)
    direct = Normal(0.0, 1.0).log_prob(u).sum() + jacobian_log_det(to_base, z)
    torch.testing.assert_close(prior.log_prob(z[None])[0], direct, rtol=1e-5, atol=1e-5)
    samples = prior.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3) and torch.isfinite(prior.log_prob(samples)).all()


def test_standard_normal_prior_samples_as_before_and_knows_its_quantiles():
    prior = StandardNormalPrior(4)
    z = prior.sample(6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, torch.randn(6, 4, generator=torch.Generator().manual_seed(3)))
    q = prior.marginal_quantiles(torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    assert q.shape == (3, 4)
    torch.testing.assert_close(q[:, 0], torch.tensor([-1.6449, 0.0, 1.6449]), atol=1e-4, rtol=0)


def test_standard_normal_prior_builds_p_of_z_once_per_device():
    prior = StandardNormalPrior(4)
    p = prior()
    assert prior() is p and p.event_shape == (4,) and p.mean.device == torch.device("cpu")


def test_a_posterior_and_prior_must_agree_on_the_latent_size():
    with pytest.raises(ValueError, match=r"model.prior.latent_dim=4 differs"):
        tiny_vae(3, prior=StandardNormalPrior(4))


def test_every_component_trains_a_step_with_finite_gradients():
    x = binary_images(16)
    for components in ({"posterior": IAFPosterior(3, hidden_dims=[8])},
                       {"prior": MixtureOfGaussiansPrior(3)}, {"prior": FlowPrior(3)},
                       {"prior": VampPrior(3, (1, 8, 8), num_pseudo_inputs=5),
                        "posterior": IAFPosterior(3, hidden_dims=[8])}):
        vae = tiny_vae(**components).train()
        loss = vae.training_step((x, torch.zeros(16)), 0)
        loss.backward()
        grads = [p.grad for p in vae.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), components


def test_path_gradient_keeps_the_kl_estimate_and_drops_its_score_term():
    """Sticking the landing: with q equal to p, log q(z) - log p(z) is 0 for every z, and so is
    its path gradient; the plain estimator's gradient is not (its score term)."""
    from vaelab.models.distributions import kl_per_image

    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    p = MixtureOfGaussiansPrior(3, num_components=1, mean_init_std=0.0)()  # N(0, I), no closed form
    torch.manual_seed(0)
    for path_gradient, vanishes in ((True, True), (False, False)):
        q = DiagonalGaussian(mu, logvar, path_gradient)
        z = q.rsample()
        kl = kl_per_image(q, p, z)
        torch.testing.assert_close(kl, torch.zeros(4), atol=1e-5, rtol=0)
        grads = torch.autograd.grad(kl.sum(), (mu, logvar))
        assert all((g.abs().max() < 1e-5) == vanishes for g in grads), path_gradient


def test_mixture_components_start_near_the_origin():
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(50, num_components=10)
    assert prior.means.norm(dim=1).max() < 1.0  # not N(0, I) draws, some 7 apart in 50 dims
    assert prior.means.std().item() == pytest.approx(0.1, rel=0.1)
