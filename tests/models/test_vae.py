"""The VAE's maths and interface: likelihoods against torch.distributions, the ELBO's terms,
the reparameterisation's gradients, beta, sampling and reconstruction."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal
from torchmetrics import Metric

from helpers.models import binary_images, tiny_vae
from vaelab.models import BernoulliLikelihood, GaussianLikelihood, VampPrior
from vaelab.models.distributions import gaussian_kl
from vaelab.models.running_means import RunningMeans


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 1, 4, 4, generator=g) * 3
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5), generator=g)
    expected = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), expected)


def test_reconstruction_term_is_minus_log_prob_and_bernoullis_records_no_negation():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 1, 4, 4, generator=g) * 3).requires_grad_()
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.5), generator=g)
    for likelihood in (BernoulliLikelihood(), GaussianLikelihood()):
        nll = likelihood.nll(logits, x)
        assert torch.equal(nll, -likelihood.log_prob(logits, x))
    # the training step's recon: BCE summed per image, no negation of a negation
    assert BernoulliLikelihood().nll(logits, x).grad_fn.name() == "SumBackward1"


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


def test_forward_gives_the_elbo_terms_of_one_posterior_sample():
    vae, x = tiny_vae(), binary_images(8)
    torch.manual_seed(1)
    out = vae(x)
    q = out["q"]
    # the sample is mu + sigma * eps with the eps of the global stream
    torch.manual_seed(1)
    eps = torch.randn(8, 3)
    torch.testing.assert_close(out["z"], q.mu + torch.exp(0.5 * q.logvar) * eps)
    recon = -Bernoulli(logits=vae.decode(out["z"])).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(out["recon"], recon)
    # closed-form KL(N(mu, sigma^2) || N(0, I)), per dimension and summed
    torch.testing.assert_close(out["kl_per_dim"], gaussian_kl(q.mu, q.logvar))
    expected = torch.distributions.kl_divergence(
        Normal(q.mu, q.stddev), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(out["kl"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["elbo"], -(out["recon"] + out["kl"]))


def test_without_a_closed_form_the_kl_is_log_q_minus_log_p_at_the_sample():
    vae = tiny_vae(prior=VampPrior(3, (1, 8, 8), num_pseudo_inputs=5))
    x = binary_images(6)
    out = vae(x)
    assert out["kl_per_dim"] is None
    torch.testing.assert_close(out["kl"], out["q"].log_prob(out["z"])
                               - vae.prior.log_prob(out["z"]))


def test_gradients_reach_the_encoder_through_the_sampled_z():
    vae = tiny_vae()
    x = binary_images(8)
    # The reconstruction term depends on the encoder only through z = mu + sigma * eps.
    vae(x)["recon"].mean().backward()
    grads = [p.grad for p in vae.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_beta_scales_only_the_kl_term():
    x = binary_images(16)
    losses, outs = {}, {}
    for beta in (1.0, 4.0):
        vae = tiny_vae(beta=beta)
        torch.manual_seed(1)
        losses[beta] = vae.training_step((x, torch.zeros(16)), 0)
        torch.manual_seed(1)
        outs[beta] = vae(x)
    torch.testing.assert_close(outs[1.0]["recon"], outs[4.0]["recon"])
    torch.testing.assert_close(outs[1.0]["kl"], outs[4.0]["kl"])
    torch.testing.assert_close(losses[4.0] - losses[1.0], 3.0 * outs[1.0]["kl"].mean())
    torch.testing.assert_close(losses[1.0], -outs[1.0]["elbo"].mean())


def test_logged_values_are_kept_out_of_the_autograd_graph():
    vae = tiny_vae().train()
    loss, values, out = vae.batch_values(binary_images(8))
    assert loss.grad_fn is not None and values.grad_fn is None
    torch.testing.assert_close(values[:, 1], out["elbo"].detach())
    torch.testing.assert_close(values[:, 4], -out["elbo"].detach() / (64 * math.log(2)))


def test_running_means_are_exact_and_updated_without_reassigning_their_states(monkeypatch):
    metric = RunningMeans(("a", "b"))
    assigned = []
    original = Metric.__setattr__
    monkeypatch.setattr(Metric, "__setattr__", lambda self, name, value: (
        assigned.append(name), original(self, name, value)))
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    metric.update(values[:2])
    metric.update(values[2:])
    assert {"sums", "count"}.isdisjoint(assigned)  # nn.Module's checked __setattr__ is slow
    assert {k: v.item() for k, v in metric.compute().items()} == {"a": 3.0, "b": 5.0}


def test_nan_loss_raises_a_clear_error():
    vae = tiny_vae()
    x = torch.full((4, 1, 8, 8), float("nan"))
    with pytest.raises(FloatingPointError, match="lower model.optimizer.lr"):
        vae.training_step((x, torch.zeros(4)), 0)


def test_sample_and_reconstruct_decode_prior_draws_and_posterior_means():
    vae = tiny_vae()
    samples = vae.sample(6, generator=torch.Generator().manual_seed(0))
    z = torch.randn(6, vae.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, torch.sigmoid(vae.decode(z)))
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(vae.reconstruct(x),
                               torch.sigmoid(vae.decode(vae.posterior(x).mean)))
    assert not torch.equal(samples, vae.sample(6, generator=torch.Generator().manual_seed(1)))
    cold = vae.sample(6, generator=torch.Generator().manual_seed(0), temperature=0.5)
    torch.testing.assert_close(cold, torch.sigmoid(vae.decode(0.5 * z)))


def test_bits_per_dim_are_the_negative_elbo_in_bits():
    vae, x = tiny_vae(), binary_images(8)
    torch.manual_seed(0)
    _, values, out = vae.batch_values(x)
    bpd = values[:, vae.metric_names.index("bpd")]
    torch.testing.assert_close(bpd, -out["elbo"] / (64 * math.log(2)))
