"""Training objectives of the VAE family, one config choice each (conf/model/objective/).

An objective turns the VAE's forward outputs for a batch of B images (recon, kl, kl_per_dim,
z, the posterior q and prior p, the condition y) into the per-image loss whose batch mean the
VAE minimises, and into named per-image terms logged as <stage>/<name>. Whatever the
objective, <stage>/elbo, /recon and /kl stay the one-sample ELBO's terms, so runs compare in
one table.
"""

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from vaelab.models.iwae import iwae_bound
from vaelab.models.kl_schedules import KLSchedule
from vaelab.validation import check_number

ESTIMATORS = ("mws", "mss")


class ObjectiveValue(NamedTuple):
    """An objective on a batch of B images."""

    #: [B], the objective per image; its batch mean is <stage>/loss
    loss: torch.Tensor
    #: name -> [B], the terms logged as <stage>/<name>
    terms: dict[str, torch.Tensor]
    #: scalar loss of the objective's own network (FactorVAE's discriminator), which only that
    #: network's optimiser follows; None where the objective has no network of its own
    auxiliary_loss: torch.Tensor | None = None


class Objective(nn.Module, ABC):
    """Base class: `forward(model, x, out, step)` -> ObjectiveValue."""

    #: the config name, model/objective=<name>
    name: str
    #: how vaelab-report's plots name it
    label: str = ""
    #: its regularisation strength, (config key, symbol): vaelab-report's x axis
    strength: tuple[str, str] = ("model.beta", "β")
    #: what it needs of the latent model (vaelab.models.compatibility)
    requires: frozenset[str] = frozenset()
    #: the names of ObjectiveValue.terms, the per-image terms it logs
    terms: tuple[str, ...] = ()
    #: optimiser (a partial taking params) of the objective's own parameters, if it has any
    own_optimizer: Callable[..., torch.optim.Optimizer] | None = None

    @abstractmethod
    def forward(self, model: nn.Module, x: torch.Tensor, out: dict[str, torch.Tensor],
                step: int) -> ObjectiveValue:
        """x [B, C, H, W]; `out` is the VAE's forward(x); `step` the optimizer step."""

    def setup_data(self, datamodule) -> None:
        """Take what the objective needs to know of the training data (when fitting starts)."""


class Elbo(Objective):
    """recon + the KL schedule's term (model/kl_schedule with model.beta): the ELBO (beta = 1),
    a beta-VAE, KL warm-up, cyclical annealing, free bits, or controlled capacity (AnnealedVAE)."""

    name = "elbo"
    label = "β-VAE"

    def __init__(self, kl_schedule: KLSchedule):
        super().__init__()
        self.kl_schedule = kl_schedule

    def forward(self, model, x, out, step):
        return ObjectiveValue(self.kl_schedule.loss(out["recon"], out["kl"], out["kl_per_dim"],
                                                    step, out["kl_per_layer"]), {})


class IWAE(Objective):
    """-(the K-sample importance-weighted bound) per image (Burda et al. 2016):
    -log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x); K = 1 is the ELBO."""

    name = "iwae"
    label = "IWAE"

    def __init__(self, num_samples: int = 5):
        super().__init__()
        check_number("model.objective.num_samples", num_samples, low=1, integer=True)
        self.num_samples = num_samples

    def forward(self, model, x, out, step):
        # Fresh samples for the bound: the logged elbo/recon/kl stay the one-sample ELBO.
        log_w = model.log_importance_weights(x, out["y"], out["q"], self.num_samples)
        return ObjectiveValue(-iwae_bound(log_w), {})


# -- beta-TCVAE ----------------------------------------------------------------------------------
def log_batch_weights(batch_size: int, dataset_size: int, estimator: str,
                      like: torch.Tensor) -> torch.Tensor:
    """log w_ij of the estimate q(z_i) ~ sum_j w_ij q(z_i|x_j) from a batch; [B, B].

    q(z) = (1/N) sum_n q(z|x_n) is the aggregate posterior over the N training images.
    mws (Chen et al.'s minibatch weighted sampling): w_ij = 1/(N B) for every pair; in
    expectation below q(z_i), by up to a factor N B / (B - 1) (a collapsed posterior, q(z|x) =
    p(z), gives log q(z) log N low, so MI = log N and TC = (D - 1) log N).
    mss (minibatch stratified sampling): two strata, image i itself, known exactly (w_ii = 1/N),
    and the other N - 1 images, estimated by the batch's other B - 1 (w_ij = (N-1)/(N(B-1))),
    unbiased for q(z_i) when those are a uniform sample. (Chen et al.'s estimator gives one of
    the others 1/(B-1) - 1/N and the rest 1/(B-1): averaged over which one, these. Their code,
    rtqichen/beta-tcvae's `_log_importance_weight_matrix`, strides by B, so its 1/N fills
    column 0, not the diagonal: every row weights image 0 by 1/N and image 1 by
    1/(B-1) - 1/N, an image's own q(z_i|x_i) gets 1/(B-1) except in rows 0 and 1, and row B-2,
    whose column 0 is overwritten by 1/(B-1) - 1/N, sums to 1 + 1/(B-1) - 2/N; its PR #1
    proposes the fix.)
    """
    n, b = dataset_size, batch_size
    if estimator == "mws":
        return torch.full((b, b), -math.log(n * b), dtype=like.dtype, device=like.device)
    if b < 2:
        raise ValueError("the mss estimator of beta-TCVAE needs at least 2 images per batch and "
                         "device: raise data.batch_size or use model.objective.estimator=mws")
    log_w = torch.full((b, b), math.log((n - 1) / (n * (b - 1))) if n > 1 else -math.inf,
                       dtype=like.dtype, device=like.device)
    return log_w.fill_diagonal_(-math.log(n))


def log_aggregate_posterior(log_q: torch.Tensor, dataset_size: int, estimator: str
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log q(z_i|x_i) [B], log q(z_i) [B], log q(z_i,d) [B, D]) for z_i ~ q(z|x_i), with the
    aggregate posterior q and its marginals q(z_d) estimated from the batch; log_q [B, B, D] is
    log q(z_i,d | x_j) indexed [i, j, d] (DiagonalGaussian.pairwise_log_prob)."""
    log_w = log_batch_weights(log_q.shape[0], dataset_size, estimator, log_q)
    joint = log_q.sum(dim=2)  # log q(z_i | x_j)
    log_qz = torch.logsumexp(log_w + joint, dim=1)
    log_qz_dims = torch.logsumexp(log_w[..., None] + log_q, dim=1)
    return joint.diagonal(), log_qz, log_qz_dims


class BetaTCVAE(Objective):
    """Chen et al. (2018): recon + alpha * MI + beta * TC + gamma * DWKL at z ~ q(z|x), with
        MI   = log q(z|x) - log q(z)          index-code mutual information,
        TC   = log q(z) - sum_d log q(z_d)    total correlation,
        DWKL = sum_d log q(z_d) - log p(z)    dimension-wise KL,
    summing to log q(z|x) - log p(z), the one-sample estimate of KL(q(z|x) || p(z)); q(z) and
    q(z_d) come from `log_aggregate_posterior`. beta is model.beta (the VAE passes it).

    N, the training-set size, is read from the datamodule when fitting starts and saved in
    checkpoints. Under DDP each rank estimates from its own share of the batch, still with the
    whole N: every rank's share is a uniform sample of the whole training set (ranks take
    strides of one shared permutation per epoch), so it is an estimate from a smaller batch.
    """

    name = "beta_tcvae"
    label = "β-TCVAE"
    requires = frozenset({"gaussian_posterior", "kl_per_dim", "one_latent_layer"})
    terms = ("mi", "tc", "dwkl")

    def __init__(self, beta: float = 1.0, alpha: float = 1.0, gamma: float = 1.0,
                 estimator: str = "mss"):
        super().__init__()
        check_number("model.beta", beta, low=0)
        check_number("model.objective.alpha", alpha, low=0)
        check_number("model.objective.gamma", gamma, low=0)
        if estimator not in ESTIMATORS:
            raise ValueError(f"model.objective.estimator must be one of {ESTIMATORS}, got "
                             f"{estimator!r}")
        self.alpha, self.beta, self.gamma, self.estimator = alpha, beta, gamma, estimator
        #: N, the number of training images (None until fitting starts or a checkpoint loads)
        self.dataset_size: int | None = None

    def get_extra_state(self) -> dict:
        return {"dataset_size": self.dataset_size}

    def set_extra_state(self, state: dict) -> None:
        self.dataset_size = state["dataset_size"]

    def setup_data(self, datamodule) -> None:
        if datamodule is None or not hasattr(datamodule, "images"):
            raise ValueError("beta-TCVAE needs the training-set size: fit with a vaelab DataModule "
                             "(trainer.fit(model, datamodule=...), as vaelab-train does)")
        self.dataset_size = len(datamodule.images("train"))

    def forward(self, model, x, out, step):
        if self.dataset_size is None:
            raise RuntimeError("beta-TCVAE's training-set size is unknown: it is set when "
                               "fitting starts (or loaded from a checkpoint); set dataset_size")
        log_qz_x, log_qz, log_qz_dims = log_aggregate_posterior(
            out["q"].pairwise_log_prob(out["z"]), self.dataset_size, self.estimator)
        log_prod_qz = log_qz_dims.sum(dim=1)
        mi = log_qz_x - log_qz
        tc = log_qz - log_prod_qz
        dwkl = log_prod_qz - out["p"].log_prob(out["z"])
        loss = out["recon"] + self.alpha * mi + self.beta * tc + self.gamma * dwkl
        return ObjectiveValue(loss, {"mi": mi, "tc": tc, "dwkl": dwkl})


# -- FactorVAE -----------------------------------------------------------------------------------
class Discriminator(nn.Module):
    """MLP with leaky ReLUs from z to 2 logits (0: a sample of q(z), 1: of prod_d q(z_d));
    [B, latent_dim] -> [B, 2]."""

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int] = (1000,) * 6,
                 negative_slope: float = 0.2):
        super().__init__()
        sizes = [latent_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(negative_slope)]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each latent dimension shuffled across the batch on its own: samples of prod_d q(z_d);
    [B, D] -> [B, D]."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


class FactorVAE(Objective):
    """Kim & Mnih (2018): recon + KL + gamma * TC, TC = log D(z) / (1 - D(z)) (the density-ratio
    trick), D telling samples of q(z) from dimension-wise permuted ones (`permute_dims`).

    D minimises its cross-entropy with its own optimiser (`own_optimizer`). Both losses come
    from one backward pass: the TC term reads D through detached weights and D's loss reads z
    detached, so each network gets the gradient of its own loss only.
    """

    name = "factor_vae"
    label = "FactorVAE"
    strength = ("model.objective.gamma", "γ")
    requires = frozenset({"one_latent_layer"})
    terms = ("tc", "discriminator_loss", "discriminator_accuracy")

    def __init__(self, discriminator: nn.Module,
                 discriminator_optimizer: Callable[..., torch.optim.Optimizer],
                 gamma: float = 10.0):
        super().__init__()
        check_number("model.objective.gamma", gamma, low=0)
        self.discriminator = discriminator
        self.own_optimizer = discriminator_optimizer
        self.gamma = gamma

    def total_correlation(self, z: torch.Tensor) -> torch.Tensor:
        """log D(z) / (1 - D(z)) per image, differentiable in z but not in D's weights;
        [B, D] -> [B]."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (z,))
        return logits[:, 0] - logits[:, 1]

    def discriminator_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's cross-entropy and accuracy per image, on z (class 0) and on permuted z
        (class 1), each averaged over the two; z [B, D] (detached) -> 2 x [B]."""
        b = z.shape[0]
        logits = self.discriminator(torch.cat([z, permute_dims(z)]))
        labels = torch.arange(2, device=z.device).repeat_interleave(b)
        cross_entropy = F.cross_entropy(logits, labels, reduction="none").view(2, b).mean(0)
        accuracy = (logits.argmax(dim=1) == labels).to(z.dtype).view(2, b).mean(0)
        return cross_entropy, accuracy

    def forward(self, model, x, out, step):
        tc = self.total_correlation(out["z"])
        d_loss, d_accuracy = self.discriminator_terms(out["z"].detach())
        loss = out["recon"] + out["kl"] + self.gamma * tc
        terms = {"tc": tc, "discriminator_loss": d_loss, "discriminator_accuracy": d_accuracy}
        return ObjectiveValue(loss, terms, d_loss.mean())


# -- DIP-VAE -------------------------------------------------------------------------------------
def dip_penalty(covariance: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2; [D, D] -> scalar."""
    diagonal = covariance.diagonal()
    off_diagonal = covariance - torch.diag_embed(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


def batch_covariance(mu: torch.Tensor) -> torch.Tensor:
    """E[mu mu^T] - E[mu] E[mu]^T over the batch (divided by B); [B, D] -> [D, D]."""
    centered = mu - mu.mean(dim=0)
    return centered.T @ centered / mu.shape[0]


class DipVAE(Objective):
    """Kumar et al. (2018): recon + KL + dip_penalty(C), pushing a covariance C that a
    disentangled posterior makes the identity towards it (off-diagonal weight lambda_od,
    diagonal lambda_d). C is a batch estimate, so the penalty is one number per batch."""

    requires = frozenset({"gaussian_posterior", "one_latent_layer"})
    terms = ("dip_penalty",)
    strength = ("model.objective.lambda_od", "λ_od")

    def __init__(self, lambda_od: float, lambda_d: float):
        super().__init__()
        check_number("model.objective.lambda_od", lambda_od, low=0)
        check_number("model.objective.lambda_d", lambda_d, low=0)
        self.lambda_od, self.lambda_d = lambda_od, lambda_d

    @abstractmethod
    def covariance(self, q) -> torch.Tensor:
        """The penalised covariance of a batch's Gaussian posterior q (mean, variance [B, D])
        -> [D, D]."""

    def forward(self, model, x, out, step):
        penalty = dip_penalty(self.covariance(out["q"]),
                              self.lambda_od, self.lambda_d).expand_as(out["recon"])
        return ObjectiveValue(out["recon"] + out["kl"] + penalty, {"dip_penalty": penalty})


class DipVAEI(DipVAE):
    """DIP-VAE-I: C = Cov_x[mu(x)], the covariance of the posterior means."""

    name = "dip_vae_i"
    label = "DIP-VAE-I"

    def __init__(self, lambda_od: float = 10.0, lambda_d: float = 100.0):
        super().__init__(lambda_od, lambda_d)

    def covariance(self, q):
        return batch_covariance(q.mean)


class DipVAEII(DipVAE):
    """DIP-VAE-II: C = Cov_x[mu(x)] + E_x[diag sigma^2(x)], the covariance of the aggregate
    posterior q(z)."""

    name = "dip_vae_ii"
    label = "DIP-VAE-II"

    def __init__(self, lambda_od: float = 10.0, lambda_d: float = 10.0):
        super().__init__(lambda_od, lambda_d)

    def covariance(self, q):
        return batch_covariance(q.mean) + torch.diag_embed(q.variance.mean(dim=0))


# -- built by the VAE ----------------------------------------------------------------------------
def build_objective(objective: Callable[..., Objective] | None, kl_schedule: KLSchedule,
                    beta: float) -> Objective:
    """The objective from its partial (`_partial_: true`): given the KL schedule if it takes one
    (elbo), else given model.beta if it takes one (beta-TCVAE's TC weight); a beta other than 1
    that it would ignore is refused (an ignored KL schedule: vaelab.models.compatibility)."""
    if objective is None:
        return Elbo(kl_schedule)
    if isinstance(objective, Objective):
        raise TypeError("pass the objective as a class or functools.partial: the VAE gives it "
                        "the KL schedule or model.beta")
    parameters = inspect.signature(objective).parameters
    if "kl_schedule" in parameters:
        return objective(kl_schedule=kl_schedule)
    name = getattr(getattr(objective, "func", objective), "name", "this objective")
    if "beta" in parameters:
        return objective(beta=beta)
    if beta != 1.0:
        raise ValueError(
            f"model.beta={beta} has no effect with model/objective={name}: leave model.beta at 1 "
            "and set the objective's own weights (model.objective.*)")
    return objective()
