"""The beta-VAE family's objectives: beta-TCVAE's estimators against brute force, FactorVAE's
discriminator, DIP-VAE's penalties, and short training and resumed runs of each."""

import itertools
import math
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.distributions import Normal

from helpers.configs import steps_per_epoch, train_images
from helpers.models import tiny_vae
from vaelab.checkpoints import load_run
from vaelab.configs import compose_config
from vaelab.models import VAE, BernoulliLikelihood, StandardNormal
from vaelab.models.distributions import DiagonalGaussian
from vaelab.models.kl_schedules import CyclicalAnnealing
from vaelab.models.objectives import (
    BetaTCVAE,
    DipVAEI,
    DipVAEII,
    Discriminator,
    Elbo,
    FactorVAE,
    batch_covariance,
    log_aggregate_posterior,
)
from vaelab.models.vae import OBJECTIVE_OPTIMIZER
from vaelab.nets import MLPDecoder, MLPEncoder
from vaelab.train import train

SHAPE = (1, 8, 8)
OBJECTIVES = ("elbo", "iwae", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")
TERMS = {"elbo": (), "iwae": (), "beta_tcvae": ("mi", "tc", "dwkl"),
         "factor_vae": ("tc", "discriminator_loss", "discriminator_accuracy"),
         "dip_vae_i": ("dip_penalty",), "dip_vae_ii": ("dip_penalty",)}
# the paper's discriminator (6 x 1000 units) is slow for a test: two small layers learn as well
SMALL_DISCRIMINATOR = "model.objective.discriminator.hidden_dims=[32,32]"


def small_vae(objective, latent_dim: int = 3) -> VAE:
    return tiny_vae(latent_dim, hidden=(32,), objective=objective).train()


def binary_images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.bernoulli(torch.full((n, *SHAPE), 0.3), generator=g)


def posterior_batch(b: int, d: int, dtype=torch.float32, seed: int = 0) -> dict:
    """What the VAE's forward gives an objective: z ~ q(z|x) for random posteriors."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=dtype)
    logvar = torch.randn(b, d, generator=g, dtype=dtype) * 0.5 - 1
    z = mu + torch.exp(0.5 * logvar) * torch.randn(b, d, generator=g, dtype=dtype)
    return {"z": z, "mu": mu, "logvar": logvar, "recon": torch.zeros(b, dtype=dtype),
            "q": DiagonalGaussian(mu, logvar), "p": StandardNormal(d, dtype=dtype)}


# -- beta-TCVAE ----------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_terms_sum_to_the_sampled_kl(estimator):
    out = posterior_batch(32, 4)
    objective = BetaTCVAE(beta=3.0, alpha=2.0, gamma=0.5, estimator=estimator)
    objective.dataset_size = 1000
    value = objective(None, None, out, 0)
    mi, tc, dwkl = (value.terms[k] for k in ("mi", "tc", "dwkl"))
    q = Normal(out["mu"], torch.exp(0.5 * out["logvar"]))
    sampled_kl = (q.log_prob(out["z"]) - Normal(0.0, 1.0).log_prob(out["z"])).sum(1)
    torch.testing.assert_close(mi + tc + dwkl, sampled_kl, rtol=0, atol=1e-4)
    torch.testing.assert_close(value.loss, 2.0 * mi + 3.0 * tc + 0.5 * dwkl)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
@torch.no_grad()
def test_unit_weights_give_the_elbo_up_to_monte_carlo_error(estimator):
    """With alpha = beta = gamma = 1 the estimated log q(z) cancels: the loss is recon +
    log q(z|x) - log p(z), whose batch mean differs from -ELBO (closed-form KL) only by the
    one-sample Monte-Carlo error of the KL, a mean of B zero-mean terms."""
    model = small_vae(partial(BetaTCVAE, estimator=estimator))
    model.objective.dataset_size = 60_000
    x = binary_images(2000)
    out = model(x)
    loss = model.objective(model, x, out, model.global_step).loss
    error = loss + out["elbo"]  # sampled KL - closed-form KL, per image
    standard_error = error.std() / math.sqrt(len(error))
    # loss vs -ELBO within 4 standard errors of that mean (fails 1 run in ~16,000), and that
    # is a sharp comparison: a large batch, a tiny model
    assert abs(loss.mean() + out["elbo"].mean()) < 4 * standard_error
    assert standard_error < 0.05


def brute_force_q(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> tuple:
    """(q(z), q(z_d)) of the aggregate posterior over all N images, float64 numpy, written out:
    q(z) = (1/N) sum_n prod_d N(z_d; mu_nd, sigma_nd^2); z [D]; mu, logvar [N, D]."""
    z, mu, var = z.numpy(), mu.numpy(), np.exp(logvar.numpy())
    density = np.exp(-(z - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)  # [N, D]
    return density.prod(axis=1).mean(), density.mean(axis=0)


def estimate_for_first(batch: list[int], data: dict, estimator: str, n: int) -> tuple:
    """The estimator's (q(z), q(z_d)) for the batch's first image."""
    log_q = DiagonalGaussian(data["mu"][batch], data["logvar"][batch]).pairwise_log_prob(
        data["z"][batch])
    log_qz_x, log_qz, log_qz_dims = log_aggregate_posterior(log_q, n, estimator)
    return log_qz[0].exp().item(), log_qz_dims[0].exp().numpy()


def test_mss_is_unbiased_for_the_aggregate_posterior():
    n, b = 6, 3
    data = posterior_batch(n, 2, torch.float64, seed=1)
    for i in range(n):
        exact, exact_dims = brute_force_q(data["z"][i], data["mu"], data["logvar"])
        # every batch with image i and b-1 others drawn without replacement, equally likely
        others = [j for j in range(n) if j != i]
        estimates = [estimate_for_first([i, *pick], data, "mss", n)
                     for pick in itertools.combinations(others, b - 1)]
        assert np.mean([e[0] for e in estimates]) == pytest.approx(exact, rel=1e-12)
        np.testing.assert_allclose(np.mean([e[1] for e in estimates], axis=0), exact_dims,
                                   rtol=1e-12)


def test_mws_is_the_papers_importance_weighted_lower_bound():
    """Chen et al.: image i plus b-1 images drawn i.i.d. from all N, each pair weighted
    1/(N b); in expectation (q(z_i|x_i) + (b-1) q(z_i)) / (N b), below q(z_i)."""
    n, b = 5, 3
    data = posterior_batch(n, 2, torch.float64, seed=2)
    for i in range(n):
        exact, exact_dims = brute_force_q(data["z"][i], data["mu"], data["logvar"])
        own, own_dims = brute_force_q(data["z"][i], data["mu"][i:i + 1], data["logvar"][i:i + 1])
        estimates = [estimate_for_first([i, *draw], data, "mws", n)
                     for draw in itertools.product(range(n), repeat=b - 1)]
        expected = (own + (b - 1) * exact) / (n * b)
        assert np.mean([e[0] for e in estimates]) == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(np.mean([e[1] for e in estimates], axis=0),
                                   (own_dims + (b - 1) * exact_dims) / (n * b), rtol=1e-12)
        assert expected < exact


def test_a_batch_of_the_whole_dataset():
    """mss is then exact; mws is log N low (its weights sum to 1/N)."""
    n = 7
    data = posterior_batch(n, 3, torch.float64, seed=3)
    exact = [brute_force_q(data["z"][i], data["mu"], data["logvar"]) for i in range(n)]
    log_exact = torch.tensor([math.log(e[0]) for e in exact], dtype=torch.float64)
    log_exact_dims = torch.tensor(np.log([e[1] for e in exact]))
    for estimator, offset in (("mss", 0.0), ("mws", math.log(n))):
        log_q = DiagonalGaussian(data["mu"], data["logvar"]).pairwise_log_prob(data["z"])
        _, log_qz, log_qz_dims = log_aggregate_posterior(log_q, n, estimator)
        torch.testing.assert_close(log_qz, log_exact - offset, rtol=0, atol=1e-12)
        torch.testing.assert_close(log_qz_dims, log_exact_dims - offset, rtol=0, atol=1e-12)


def test_beta_tcvae_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="model.objective.estimator must be one of"):
        BetaTCVAE(estimator="mcmc")
    objective = BetaTCVAE(estimator="mss")
    with pytest.raises(RuntimeError, match="training-set size is unknown"):
        objective(None, None, posterior_batch(4, 2), 0)
    objective.dataset_size = 100
    with pytest.raises(ValueError, match="at least 2 images per batch"):
        objective(None, None, posterior_batch(1, 2), 0)


# -- FactorVAE -----------------------------------------------------------------------------------
def train_discriminator(correlated: bool, steps: int = 300) -> tuple[float, float]:
    """(accuracy, mean TC estimate) on fresh batches after training D alone on z = (u, v, w)
    or, correlated, z = (u, u, w)."""
    torch.manual_seed(0)
    objective = FactorVAE(Discriminator(3, hidden_dims=(64, 64)),
                          partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9)))
    optimizer = objective.own_optimizer(params=objective.parameters())

    def batch(b=256):
        z = torch.randn(b, 3)
        if correlated:
            z[:, 1] = z[:, 0]
        return z

    for _ in range(steps):
        loss, _ = objective.discriminator_terms(batch())
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
    with torch.no_grad():
        z = batch(4096)
        return objective.discriminator_terms(z)[1].mean().item(), \
            objective.total_correlation(z).mean().item()


def test_discriminator_tells_correlated_latents_from_permuted_ones():
    accuracy, tc = train_discriminator(correlated=True)
    assert accuracy > 0.8 and tc > 0.5
    # independent latents: permuting changes nothing there is to see
    accuracy, tc = train_discriminator(correlated=False)
    assert 0.4 < accuracy < 0.6 and abs(tc) < 0.2


def test_each_network_gets_only_its_own_loss_gradient():
    model = small_vae(partial(FactorVAE, Discriminator(3, (16,)), torch.optim.Adam, gamma=5.0))
    x = binary_images(32)
    value = model.objective(model, x, model(x), 0)
    vae_grads = torch.autograd.grad(value.loss.mean(), list(model.objective.parameters()),
                                    allow_unused=True)
    assert all(g is None for g in vae_grads)
    d_grads = torch.autograd.grad(value.auxiliary_loss, list(model.encoder.parameters()),
                                  allow_unused=True)
    assert all(g is None for g in d_grads)
    # and the VAE's loss is recon + KL + gamma * TC
    out = model(x)
    value = model.objective(model, x, out, 0)
    torch.testing.assert_close(value.loss, out["recon"] + out["kl"] + 5.0 * value.terms["tc"])


class RecordDiscriminatorGradients(L.Callback):
    """Test helper: the discriminator's gradient norm at each of its optimiser's steps."""

    norms: list[float] = []

    def on_train_start(self, trainer, pl_module):
        optimizer = pl_module.objective_optimizer
        step = optimizer.step

        def recorded_step(*args, **kwargs):
            grads = [p.grad for p in pl_module.objective.parameters()]
            RecordDiscriminatorGradients.norms.append(
                torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
            return step(*args, **kwargs)

        optimizer.step = recorded_step


@pytest.mark.parametrize("clip", ["null", 0.01])
@pytest.mark.integration
def test_gradient_clipping_reaches_the_discriminator(make_cfg, tmp_path, clip):
    RecordDiscriminatorGradients.norms = []
    train(make_cfg(["model/objective=factor_vae", SMALL_DISCRIMINATOR, "trainer.max_epochs=1",
                    "+trainer.limit_train_batches=3", "logger=csv", "test=false",
                    f"trainer.gradient_clip_val={clip}",
                    "+callbacks.record._target_=test_objectives.RecordDiscriminatorGradients"],
                   output_dir=tmp_path / str(clip)))
    norms = RecordDiscriminatorGradients.norms
    assert len(norms) == 3
    if clip != "null":
        assert max(norms) <= clip * (1 + 1e-4)
    else:
        assert min(norms) > 0.01  # so the clipped run's limit bound something


# -- DIP-VAE -------------------------------------------------------------------------------------
def whitened(b: int, d: int, scale: float) -> torch.Tensor:
    """b points whose batch covariance (divided by b) is exactly scale * I; [b, d]."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    cholesky = torch.linalg.cholesky(x.T @ x / b)
    return x @ torch.linalg.inv(cholesky).T * math.sqrt(scale)


def direct_penalty(c: np.ndarray, lambda_od: float, lambda_d: float) -> float:
    d = len(c)
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return lambda_od * off + lambda_d * sum((c[i, i] - 1) ** 2 for i in range(d))


def test_dip_penalties_vanish_for_a_unit_diagonal_covariance():
    b, d = 50, 4
    mu = whitened(b, d, 1.0)
    out = {"q": DiagonalGaussian(mu, torch.zeros(b, d, dtype=torch.float64)),
           "recon": torch.zeros(b, dtype=torch.float64), "kl": torch.zeros(b, dtype=torch.float64)}
    torch.testing.assert_close(batch_covariance(mu), torch.eye(d, dtype=torch.float64))
    assert DipVAEI()(None, None, out, 0).terms["dip_penalty"].abs().max() < 1e-20
    # DIP-VAE-II adds the mean posterior variance: Cov[mu] = 0.25 I and sigma^2 = 0.75 make I
    out["q"] = DiagonalGaussian(whitened(b, d, 0.25),
                                torch.full((b, d), math.log(0.75), dtype=torch.float64))
    assert DipVAEII()(None, None, out, 0).terms["dip_penalty"].abs().max() < 1e-20
    assert DipVAEI()(None, None, out, 0).terms["dip_penalty"][0] > 1  # its C is 0.25 I


@pytest.mark.parametrize("variant", [DipVAEI, DipVAEII])
def test_dip_penalty_matches_a_direct_computation(variant):
    out = posterior_batch(40, 3, torch.float64, seed=5)
    out["kl"] = torch.full((40,), 2.0, dtype=torch.float64)
    value = variant(lambda_od=3.0, lambda_d=7.0)(None, None, out, 0)
    c = np.cov(out["mu"].numpy().T, bias=True)
    if variant is DipVAEII:
        c += np.diag(np.exp(out["logvar"].numpy()).mean(axis=0))
    expected = direct_penalty(c, 3.0, 7.0)
    assert expected > 0.1
    np.testing.assert_allclose(value.terms["dip_penalty"].numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(value.loss.numpy(), 2.0 + expected, rtol=1e-10)


# -- configs and training ------------------------------------------------------------------------
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_config_builds_its_objective(name, tmp_path):
    beta = "4" if name == "beta_tcvae" else "1"
    cfg = compose_config("train", [f"model/objective={name}", f"model.beta={beta}"], tmp_path)
    objective = instantiate(cfg.model).objective
    assert objective.name == name and objective.terms == TERMS[name]
    if name == "beta_tcvae":
        assert objective.beta == 4.0  # model.beta is the TC weight
    if name == "factor_vae":
        layers = [m for m in objective.discriminator.modules() if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in layers] == [1000] * 6 + [2]
        assert objective.own_optimizer.keywords == {"lr": 1e-4, "betas": [0.5, 0.9]}


@pytest.mark.parametrize("settings, problem", [
    ({"objective": partial(DipVAEI), "beta": 2.0},
     "model.beta=2.0 has no effect with model/objective=dip_vae_i"),
    ({"objective": partial(BetaTCVAE), "kl_schedule": CyclicalAnnealing},
     "model/objective=beta_tcvae does not schedule the KL term, so model/kl_schedule="
     "cyclical would be ignored"),
    ({"objective": partial(FactorVAE, Discriminator(3, (4,)), torch.optim.Adam, gamma=-1.0)},
     r"model.objective.gamma=-1.0: give a number >= 0"),
    ({"objective": Elbo(None)}, "as a class or functools.partial"),
])
def test_settings_an_objective_would_ignore_are_refused(settings, problem):
    with pytest.raises((ValueError, TypeError), match=problem):
        VAE(MLPEncoder(SHAPE, 6, [8]), MLPDecoder(SHAPE, 3, [8]), BernoulliLikelihood(), 3,
            torch.optim.Adam, **settings)


@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.integration
def test_each_objective_trains_and_logs_its_terms(name, make_cfg, tmp_path):
    extra = [SMALL_DISCRIMINATOR] if name == "factor_vae" else []
    cfg = make_cfg([f"model/objective={name}", *extra, "trainer.max_epochs=1", "logger=csv",
                    "test=false"])
    metrics = train(cfg)
    for stage in ("train", "val"):
        for term in ("loss", "elbo", *TERMS[name]):
            assert math.isfinite(metrics[f"{stage}/{term}"]), f"{stage}/{term}"
    # val/elbo is the one-sample ELBO whatever the objective
    assert metrics["val/elbo"] == pytest.approx(-(metrics["val/recon"] + metrics["val/kl"]),
                                                abs=1e-4)
    if name == "beta_tcvae":  # mss: the terms add up to the sampled KL, near the closed form
        kl = metrics["val/mi"] + metrics["val/tc"] + metrics["val/dwkl"]
        assert kl == pytest.approx(metrics["val/kl"], abs=0.5)
        # N is the training split's size, kept in the checkpoint for vaelab-eval's test/loss
        _, model, data = load_run(tmp_path / "run" / "checkpoints" / "last.ckpt")
        assert model.objective.dataset_size == len(data.images("train")) == train_images(cfg)
    if name == "factor_vae":
        assert 0 <= metrics["train/discriminator_accuracy"] <= 1


# A resumed run repeats the uninterrupted one's arithmetic (tests/test_resume.py), the
# discriminator's optimiser included: only float noise remains.
TOLERANCE = 1e-4
FACTOR = ["model/objective=factor_vae", SMALL_DISCRIMINATOR, "logger=csv", "model.latent_dim=2",
          "callbacks.lr_monitor=null"]


@pytest.mark.integration
def test_factor_vae_resumes_like_an_uninterrupted_run(make_cfg, tmp_path, caplog):
    train(make_cfg([*FACTOR, "trainer.max_epochs=1"], output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg([*FACTOR, "trainer.max_epochs=2", f"ckpt_path={last}"],
                             output_dir=tmp_path / "resumed"))
    cfg = make_cfg([*FACTOR, "trainer.max_epochs=2"], output_dir=tmp_path / "whole")
    whole = train(cfg)
    for key in ("val/elbo", "train/loss", "train/tc", "train/discriminator_loss", "test/elbo"):
        assert resumed[key] == pytest.approx(whole[key], abs=TOLERANCE), key
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt",
                       weights_only=True)[OBJECTIVE_OPTIMIZER]
    assert state["state"][0]["step"] == 2 * steps_per_epoch(cfg)  # continued, not restarted
    # on resume the configured discriminator settings win over the checkpoint's
    train(make_cfg([*FACTOR, "trainer.max_epochs=2", f"ckpt_path={last}",
                    "model.objective.discriminator_optimizer.lr=5e-5"],
                   output_dir=tmp_path / "new_lr"))
    state = torch.load(tmp_path / "new_lr" / "checkpoints" / "last.ckpt",
                       weights_only=True)[OBJECTIVE_OPTIMIZER]
    assert state["param_groups"][0]["lr"] == pytest.approx(5e-5, rel=1e-12)


# beta_tcvae is slow-tier (18 s): factor_vae, with its second optimiser, is the harder case
@pytest.mark.parametrize("name", ["factor_vae", pytest.param("beta_tcvae", marks=pytest.mark.slow)])
@pytest.mark.integration
def test_objective_trains_on_two_ddp_processes(name, train_cli, tmp_path):
    import json

    extra = [SMALL_DISCRIMINATOR] if name == "factor_vae" else []
    train_cli(["trainer=ddp_sim", f"model/objective={name}", *extra, "trainer.max_epochs=1",
               "logger=csv", "model.latent_dim=4"], timeout=300)
    (metrics_file,) = (tmp_path / "outputs").glob("train/runs/*/metrics.json")
    cfg = OmegaConf.load(metrics_file.parent / "config_resolved.yaml")
    steps = steps_per_epoch(cfg)
    metrics = json.loads(metrics_file.read_text())
    for term in ("val/elbo", "test/elbo", *(f"train/{t}" for t in TERMS[name])):
        assert math.isfinite(metrics[term]), term
    ckpt = torch.load(metrics_file.parent / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == steps  # one step per global batch, not per optimiser
    if name == "factor_vae":
        assert ckpt[OBJECTIVE_OPTIMIZER]["state"][0]["step"] == steps
    else:  # each rank's share of a batch samples the whole training set: N is not divided
        assert ckpt["state_dict"]["objective._extra_state"]["dataset_size"] == train_images(cfg)
