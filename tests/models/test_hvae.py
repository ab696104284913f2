"""The hierarchical VAE (models/hvae.py) against independent computations: one layer is the VAE,
the per-layer KL against Monte Carlo, the importance weights over all layers against the
separately computed log p(x|z) + log p(z) - log q(z|x), and the ladders' shapes."""

import math
import re

import pytest
import torch
from hydra.utils import instantiate
from torch.distributions import Bernoulli, Normal

from helpers.models import binary_images, tiny_hvae
from vaelab.configs import compose_config
from vaelab.models.iwae import importance_weighted_bounds

#: the MLP VAE and a one-layer ladder of the same nets, seeded alike
ONE_LAYER = {"vae": ["model.latent_dim=4"],
             "hvae": ["model=hvae", "model.ladder.latent_dims=[4]", "model.ladder.up_hidden=[7]"]}


def _model(tmp_path, kind: str, extra: list[str]):
    cfg = compose_config("train", [*ONE_LAYER[kind], *extra], tmp_path)
    torch.manual_seed(5)
    return instantiate(cfg.model)


@pytest.mark.parametrize("components, exact", [
    ([], True),
    (["model/prior=vamp", "model.prior.num_pseudo_inputs=7"], True),
    (["model/prior=flow", "model/posterior=iaf", "model.posterior.hidden_dims=[16]"], True),
    (["model/prior=mixture_of_gaussians", "model/objective=iwae"], False),
], ids=["standard", "vamp", "flow_iaf", "mixture_iwae"])
def test_one_layer_is_the_vae_number_for_number(tmp_path, components, exact):
    """With one layer the ladder builds the VAE's MLPEncoder and MLPDecoder in the same order
    (so the seed gives the same weights), the top layer's prior and posterior are the VAE's
    components, and the pass draws the same noise in the same order: the losses, the logged
    values and the bound agree exactly, and so do three Adam steps of the ELBO. The IWAE
    objective's K samples reach the prior and the decoder through one flattened view here and
    through two in the VAE, so autograd adds their gradients in another order: its steps agree
    to float rounding (about 1e-8 per gradient)."""
    vae, hvae = _model(tmp_path, "vae", components), _model(tmp_path, "hvae", components)
    assert [p.shape for p in vae.parameters()] == [p.shape for p in hvae.parameters()]
    for a, b in zip(vae.parameters(), hvae.parameters()):
        assert torch.equal(a, b)
    x = binary_images(16)
    same = torch.equal if exact else \
        (lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-5))
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (vae, hvae)]
    for step in range(3):
        results = []
        for model, optimizer in zip((vae, hvae), optimizers):
            torch.manual_seed(11)
            loss, values, _ = model.batch_values(x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            results.append((loss.detach(), values.detach()))
        check = torch.equal if step == 0 else same
        assert check(results[0][0], results[1][0]) and check(results[0][1], results[1][1])
    bounds = [importance_weighted_bounds(m, x, 20, generator=torch.Generator().manual_seed(3))
              for m in (vae, hvae)]
    assert same(bounds[0][0], bounds[1][0]) and same(bounds[0][1], bounds[1][1])
    assert vae.metric_names == hvae.metric_names  # one layer: no kl_layer_<l> columns


def test_a_two_layer_ladders_elbo_against_a_hand_computed_pass():
    """The forward pass of a 2-layer Ladder VAE, recomputed from its nets with the Ladder VAE's
    formulas written in variances: z2 ~ q(z2|x), p(z1|z2) from the step down, q(z1|x, z2) with
    precision 1/v_hat + 1/v_p and mean v (m_hat/v_hat + m_p/v_p), z1 from it, p(x|z1)."""
    model, x = tiny_hvae(latent_dims=(4, 3)), binary_images(6)
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    eps2, eps1 = torch.randn(6, 3), torch.randn(6, 4)  # drawn top first, as the pass does
    with torch.no_grad():
        estimate = model.encoder.stem(x)
        m_hat, v_hat = estimate[:, :4], estimate[:, 4:].exp()
        top = model.encoder.steps[0](estimate)
        m2, v2 = top[:, :3], top[:, 3:].exp()
        z2 = m2 + v2.sqrt() * eps2
        prior = model.decoder.steps[0](z2)
        m_p, v_p = prior[:, :4], prior[:, 4:].exp()
        v1 = 1 / (1 / v_hat + 1 / v_p)
        m1 = v1 * (m_hat / v_hat + m_p / v_p)
        z1 = m1 + v1.sqrt() * eps1
        recon = -Bernoulli(logits=model.decoder.output_net(z1)).log_prob(x).flatten(1).sum(1)
        kl1 = torch.distributions.kl_divergence(Normal(m1, v1.sqrt()),
                                                Normal(m_p, v_p.sqrt())).sum(1)
        kl2 = torch.distributions.kl_divergence(Normal(m2, v2.sqrt()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(out["z"], torch.cat([z1, z2], 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["recon"], recon, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["kl_per_layer"], torch.stack([kl1, kl2], 1),
                               rtol=1e-5, atol=1e-5)


def _normal_log_prob(z, mu, logvar):
    return Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)


def test_each_layers_kl_matches_a_monte_carlo_estimate():
    """Layer l's KL is exact given the sampled layers above: the mean of log q_l - log p_l over
    many z_l from q_l (torch's Normal, not the model's densities) agrees with it."""
    model, x = tiny_hvae(), binary_images(6)
    torch.manual_seed(0)
    with torch.no_grad():
        descent = model.posterior(x).draw()
        closed = descent.kl_per_layer()
        for layer in range(model.num_layers - 1):  # below the top, given the layers above
            q, p = descent.layers[layer].q, descent.layers[layer].p
            z = q.mu + torch.exp(0.5 * q.logvar) * torch.randn(20000, *q.mu.shape)
            ratio = _normal_log_prob(z, q.mu, q.logvar) - _normal_log_prob(z, p.mu, p.logvar)
            error = 4 * ratio.std(0) / math.sqrt(len(z))
            assert (ratio.mean(0) - closed[:, layer]).abs().le(error + 1e-4).all(), layer
        top = descent.layers[-1]
        expected = torch.distributions.kl_divergence(
            Normal(top.q.mu, torch.exp(0.5 * top.q.logvar)), Normal(0.0, 1.0)).sum(-1)
        torch.testing.assert_close(closed[:, -1], expected)


def test_the_kl_summed_over_layers_estimates_kl_of_the_whole_hierarchy():
    """sum_l KL_l (each given sampled parents) and log q(z|x) - log p(z) over whole draws are
    two unbiased estimates of KL(q(z|x) || p(z)): their means over many draws agree."""
    model, x = tiny_hvae(), binary_images(4)
    torch.manual_seed(1)
    with torch.no_grad():
        q = model.posterior(x)
        descent = q.draw(4000)
        sums = descent.kl_per_layer().sum(-1).view(4000, -1)
        ratios = (descent.log_posterior() - descent.log_prior()).view(4000, -1)
    error = 4 * ratios.std(0) / math.sqrt(4000)
    assert (sums.mean(0) - ratios.mean(0)).abs().le(error).all()


def test_importance_weights_over_all_layers_against_separate_computations():
    """log w from one pass equals log p(x|z) (from decode) + log p(z) (the prior's own
    teacher-forced pass) - log q(z|x) (the posterior's), for the same draws; the K = 1 bound
    averages to the forward pass's ELBO, and the bound grows with K."""
    model, x = tiny_hvae(), binary_images(8)
    with torch.no_grad():
        q = model.posterior(x)
        log_w = model.log_importance_weights(x, None, q, 3, torch.Generator().manual_seed(4))
        z = q.rsample((3,), torch.Generator().manual_seed(4))  # the same draws
        log_px = Bernoulli(logits=model.decode(z.flatten(0, 1))).log_prob(
            x.repeat(3, 1, 1, 1)).flatten(1).sum(1).view(3, -1)
        expected = log_px + model.prior().log_prob(z) - q.log_prob(z)
        torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-4)

        torch.manual_seed(2)
        one = torch.stack([importance_weighted_bounds(model, x, 1)[0] for _ in range(300)])
        elbo = torch.stack([model(x)["elbo"] for _ in range(300)])
        error = 4 * torch.sqrt(one.var(0) / 300 + elbo.var(0) / 300)
        assert (one.mean(0) - elbo.mean(0)).abs().le(error).all()
        bounds = [importance_weighted_bounds(model, x, k, generator=torch.Generator()
                                             .manual_seed(0))[0].mean() for k in (1, 10, 100)]
        assert bounds[0] < bounds[1] < bounds[2]


def test_decoding_a_draws_codes_gives_the_draws_likelihood_parameters():
    model, x = tiny_hvae(), binary_images(5)
    with torch.no_grad():
        descent = model.posterior(x).draw()
        torch.testing.assert_close(model.decode(descent.code()), descent.params)


def test_layer_samples_keep_the_top_layers_posterior_means_and_draw_the_rest():
    model, x = tiny_hvae(), binary_images(3)
    sizes = model.layer_sizes
    with torch.no_grad():
        means = model.posterior(x).mean
        kept = model.layer_samples(x, keep=len(sizes))
        torch.testing.assert_close(kept, means)
        top_only = model.layer_samples(x, 1, torch.Generator().manual_seed(0))
        assert torch.equal(top_only[:, -sizes[-1]:], means[:, -sizes[-1]:])
        assert not torch.allclose(top_only[:, :sizes[0]], means[:, :sizes[0]])
        again = model.layer_samples(x, 1, torch.Generator().manual_seed(0))
        assert torch.equal(top_only, again)
        # temperature 0 draws every free layer at its prior mean: the same codes every time
        cold = [model.layer_samples(x, 0, torch.Generator().manual_seed(s), temperature=0.0)
                for s in (1, 2)]
        assert torch.equal(cold[0], cold[1])


@pytest.mark.parametrize("shape, latent_layers, sizes", [
    ([3, 32, 32], [0, 1, 2, 1], [4 * 256, 4 * 64, 4 * 64, 4 * 16]),
    ([1, 28, 28], [1, 0, 1, 0, 1, 1], [4 * 784, 4 * 49, 4 * 4, 4 * 1]),
    ([3, 30, 18], [1, 1, 1], [4 * 540, 4 * 135, 4 * 40]),
])
def test_the_residual_ladder_takes_any_image_size(tmp_path, shape, latent_layers, sizes):
    stages = len(latent_layers)
    cfg = compose_config("train", [
        "model=hvae", "model/ladder=residual", "model.ladder.width=8",
        f"data.image_shape=[{','.join(map(str, shape))}]",
        f"model.ladder.latent_layers=[{','.join(map(str, latent_layers))}]",
        f"model.ladder.encoder_blocks=[{','.join(['1'] * stages)}]",
        "model/likelihood=discretized_logistic", "model.condition=label",
        "model.condition_dim=10"], tmp_path)
    model = instantiate(cfg.model)
    assert list(model.layer_sizes) == sizes and cfg.model.latent_dim == sum(sizes)
    x = torch.randint(0, 256, (3, *shape)).float() / 255
    y = torch.eye(10)[:3]
    loss, values, out = model.batch_values(x, y)
    loss.backward()
    assert torch.isfinite(loss) and values.shape == (3, 5 + len(sizes))
    assert out["kl_per_layer"].shape == (3, len(sizes))
    assert all(p.grad is not None for p in model.parameters())
    assert model.sample(2, y=y[:2]).shape == (2, *shape)


def test_compiled_cells_all_run_compiled_in_training_and_evaluation(tmp_path):
    """All cells share one forward, and torch's default allows 8 graphs of it: past that, the
    rest of the cells ran eager without a word (seen on a GPU with cifar10_hvae's 38 cells)."""
    from torch._dynamo.utils import counters

    cfg = compose_config("train", [
        "model=hvae", "model/ladder=residual", "model.ladder.width=8", "data.image_shape=[3,16,16]",
        "model.ladder.latent_layers=[1,1,1,1,1]", "model.ladder.encoder_blocks=[1,1,1,1,1]",
        "model.ladder.compile=true", "model.ladder.compile_backend=eager"], tmp_path)
    torch._dynamo.reset()
    counters.clear()
    model = instantiate(cfg.model)
    loss, _, _ = model.batch_values(torch.rand(4, 3, 16, 16))
    loss.backward()
    with torch.no_grad():
        model.eval().batch_values(torch.rand(5, 3, 16, 16))
    graphs = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    assert counters["frames"]["ok"] == counters["frames"]["total"] == graphs
    assert graphs > 8, "the check needs more graphs than torch's default limit"


def test_the_ladders_refuse_bad_shapes_in_one_line(tmp_path):
    from vaelab.configs import latent_size

    for overrides, expected in [
        (["model.ladder.latent_dims=[]"], "latent_dims is empty"),
        (["model/ladder=residual", "model.ladder.latent_layers=[1,1,0]"], "at least 1 at the last"),
        (["model/ladder=residual", "model.ladder.encoder_blocks=[1,1]"], "the same stages"),
    ]:
        cfg = compose_config("train", ["model=hvae", *overrides], tmp_path)
        with pytest.raises(ValueError, match=expected) as error:
            latent_size(cfg.model.ladder, "total")
        assert "\n" not in str(error.value)


@pytest.mark.integration
def test_training_logs_each_layers_kl_and_eval_reports_it_with_active_units(make_cfg, tmp_path,
                                                                            caplog):
    from vaelab.eval import evaluate
    from vaelab.train import train

    metrics = train(make_cfg(["model=hvae", "model/prior=vamp", "model.prior.num_pseudo_inputs=8",
                              "model/kl_schedule=linear_warmup",
                              "model.kl_schedule.warmup_steps=10", "trainer.max_epochs=2",
                              "logger=none", "callbacks.latent_viz=null"]))
    for stage in ("train", "val", "test"):
        layers = [metrics[f"{stage}/kl_layer_{i}"] for i in (1, 2)]
        assert sum(layers) == pytest.approx(metrics[f"{stage}/kl"], rel=1e-4), stage
    # the end-of-run table shows each layer's KL, as eval's does
    for i in (1, 2):
        assert re.search(rf"\n +test/kl_layer_{i} +{metrics[f'test/kl_layer_{i}']:.4f} ",
                         caplog.text), i
    results = evaluate(make_cfg([f"ckpt_path={metrics['best_checkpoint']}", "fid.enabled=false",
                                 "iwae.num_samples=10", "iwae.num_images=50"], name="eval",
                                output_dir=tmp_path / "eval"))
    assert results["test/elbo"] == pytest.approx(metrics["test/elbo"], abs=1e-3)
    assert results["test/kl_layer_2"] == pytest.approx(metrics["test/kl_layer_2"], abs=1e-3)
    per_layer = [results[f"test/active_units_layer_{i}"] for i in (1, 2)]
    assert sum(per_layer) == results["test/active_units"] and results["test/latent_dim"] == 24
    assert results["test/nll"] <= -results["test/nll_elbo"] + 1e-4


@pytest.mark.parametrize("model", ["vae", "hvae"])
def test_bf16_autocast_scores_the_likelihood_in_float32(tmp_path, model):
    """Under bf16 mixed precision the decoder's output is bfloat16; the likelihood sums 3072
    sub-pixels' log-probabilities, so it gets float32 parameters (the mixture's channel
    coupling used to fail on the mixed dtypes)."""
    nets = ["model/encoder=conv", "model/decoder=conv"] if model == "vae" else \
        ["model=hvae", "model/ladder=residual", "model.ladder.width=8"]
    cfg = compose_config("train", [*nets, "data.image_shape=[3,8,8]",
                                   "model/likelihood=discretized_logistic_mixture"], tmp_path)
    vae = instantiate(cfg.model)
    x = torch.randint(0, 256, (4, 3, 8, 8)).float() / 255
    with torch.autocast("cpu", torch.bfloat16):
        loss, values, out = vae.batch_values(x)
        log_w = vae.log_importance_weights(x, None, vae.posterior(x), 2)
    assert values.dtype == torch.float32 and out["recon"].dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(log_w).all()
