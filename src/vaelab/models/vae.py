"""The VAE LightningModule: loss = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)) in nats/image."""

import math
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from vaelab.console import log
from vaelab.models.elbo import gaussian_kl, reparameterize
from vaelab.models.iwae import iwae_bound, log_importance_weights
from vaelab.models.kl_schedules import ConstantBeta, KLSchedule, build_kl_schedule
from vaelab.models.latents import decode_means
from vaelab.models.likelihoods import BernoulliLikelihood, Likelihood
from vaelab.models.running_means import RunningMeans

STAGES = ("train", "val", "test")
METRICS = ("loss", "elbo", "recon", "kl", "bpd")
OBJECTIVES = ("elbo", "iwae")


def check_objective(objective: str, num_samples: int, kl_schedule: KLSchedule) -> None:
    """Reject objective settings that would silently train something else than asked."""
    if objective not in OBJECTIVES:
        raise ValueError(f"model.objective must be one of {OBJECTIVES}, got {objective!r}")
    if num_samples < 1:
        raise ValueError(f"model.num_samples must be >= 1, got {num_samples}")
    if objective == "elbo" and num_samples != 1:
        raise ValueError("model.num_samples > 1 needs model.objective=iwae (the ELBO here "
                         "uses one sample per image)")
    if objective == "iwae" and not (isinstance(kl_schedule, ConstantBeta)
                                    and kl_schedule.beta == 1.0):
        raise ValueError("the IWAE bound has no KL weight to set or schedule: use model.beta=1 "
                         "and model/kl_schedule=constant, or model.objective=elbo")


def check_number(key: str, value, low: float, integer: bool = False) -> None:
    """A one-line error naming the config key and its valid range."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= low:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{key}={value!r}: give {kind} >= {low:g}")


class VAE(L.LightningModule):
    """Encoder -> (mu, logvar) -> z = mu + sigma * eps -> decoder -> likelihood parameters."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        beta: float = 1.0,
        scheduler: Callable | None = None,
        scheduler_monitor: str = "val/elbo",
        kl_schedule: Callable[..., KLSchedule] | None = None,
        objective: str = "elbo",
        num_samples: int = 1,
    ):
        super().__init__()
        check_number("model.latent_dim", latent_dim, low=1, integer=True)
        check_number("model.beta", beta, low=0)
        self.kl_schedule = build_kl_schedule(kl_schedule, beta)
        check_objective(objective, num_samples, self.kl_schedule)
        self.save_hyperparameters(
            ignore=["encoder", "decoder", "likelihood", "optimizer", "scheduler", "kl_schedule"],
            logger=False,
        )
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.beta = beta
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_monitor = scheduler_monitor
        self.objective = objective
        self.num_samples = num_samples
        # Per-image values averaged over the whole split and reduced across DDP ranks by
        # torchmetrics, so logged numbers are exact dataset means. The training sums are saved
        # in checkpoints, so an epoch resumed mid-way still reports the whole epoch's means.
        self.metrics = nn.ModuleDict({f"{s}_means": RunningMeans(METRICS, persistent=s == "train")
                                      for s in STAGES})
        #: whether bits/dim are a valid measure for this likelihood on this data (first batch)
        self._bpd_valid: bool | None = None

    # -- the model ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) parameters; [B, C, H, W] -> (mu, logvar), each [B, latent_dim]."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters p(x|z); [B, latent_dim] -> [B, C, H, W]."""
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean image decoded from the posterior mean; [B, C, H, W] -> [B, C, H, W]."""
        return decode_means(self, self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images for z ~ N(0, I) (drawn on the CPU, so a seed gives the same z on every
        device); -> [n, C, H, W]."""
        return decode_means(self, torch.randn(n, self.latent_dim, generator=generator))

    def kl_weight(self) -> float | None:
        """The KL weight (beta) at the current step; None for the capacity objective."""
        return self.kl_schedule.weight(self.global_step)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image recon (-log p(x|z)), kl and elbo, each [B], for one z sample per image;
        also kl_per_dim [B, latent_dim], mu and logvar."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        params = self.decode(z)
        expected = (x.shape[0], *self.likelihood.param_shape(x.shape[1:]))
        if params.shape != expected:
            raise ValueError(
                f"decoder output {tuple(params.shape)} is not the {expected} that "
                f"{type(self.likelihood).__name__} needs for data {tuple(x.shape)}: give "
                "model.encoder/decoder the data's image_shape (${data.image_shape}) and "
                "model.decoder.out_channels=${vaelab.param_channels:${model.likelihood},"
                "${data.image_shape}}"
            )
        recon = -self.likelihood.log_prob(params, x)
        kl_per_dim = gaussian_kl(mu, logvar)
        kl = kl_per_dim.sum(dim=1)
        return {"recon": recon, "kl": kl, "elbo": -(recon + kl), "kl_per_dim": kl_per_dim,
                "mu": mu, "logvar": logvar}

    # -- Lightning ---------------------------------------------------------------------------
    def objective_per_image(self, x: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training objective per image [B] (its batch mean is the loss)."""
        if self.objective == "iwae":
            # Fresh samples for the bound; the logged elbo/recon/kl stay the one-sample ELBO.
            log_w = log_importance_weights(self, x, out["mu"], out["logvar"], self.num_samples)
            return -iwae_bound(log_w)
        return self.kl_schedule.loss(out["recon"], out["kl_per_dim"], self.global_step)

    def bits_per_dim_valid(self, x: torch.Tensor) -> bool:
        """Whether -ELBO in bits/dim means anything here (asked once, on the first batch)."""
        if self._bpd_valid is None:
            self._bpd_valid = self.likelihood.bits_per_dim_valid(x)
            if not self._bpd_valid and isinstance(self.likelihood, BernoulliLikelihood):
                log.warning("a Bernoulli likelihood on grey-level pixels is not a normalised "
                            "density, so no bits/dim are logged: binarise the data "
                            "(data.binarize=dynamic) or use model/likelihood=continuous_bernoulli")
        return self._bpd_valid

    @property
    def reports_bpd(self) -> bool:
        """Whether bits/dim are logged (known after the first batch)."""
        return bool(self._bpd_valid)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x = batch[0]
        out = self(x)
        per_image_loss = self.objective_per_image(x, out)
        loss = per_image_loss.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage} loss is {loss.item()} at global step {self.global_step}: lower "
                "model.optimizer.lr, set trainer.gradient_clip_val, or check the data for NaNs"
            )
        self.bits_per_dim_valid(x)
        bpd = -out["elbo"] / (x[0].numel() * math.log(2))
        self.metrics[f"{stage}_means"].update(
            torch.stack([per_image_loss, out["elbo"], out["recon"], out["kl"], bpd], dim=1))
        return loss

    def running_means(self, stage: str) -> dict[str, float]:
        """The epoch-so-far means of this rank (for progress bars; not reduced across ranks)."""
        metric = self.metrics[f"{stage}_means"]
        if not metric.update_called or metric.count == 0:
            return {}
        values = (metric.sums / metric.count).tolist()
        return {name: v for name, v in zip(metric.names, values)
                if name != "bpd" or self.reports_bpd}

    def _log_epoch_metrics(self, stage: str) -> None:
        # Logged once per epoch rather than per step: a per-step self.log costs Lightning more
        # CPU time than a small model's whole training step (scripts/bench_train.py).
        metric = self.metrics[f"{stage}_means"]
        if not metric.update_called:
            return
        for name, value in metric.compute().items():
            if name == "bpd" and not self.reports_bpd:
                continue  # bits/dim is only meaningful for a probability mass
            # compute() already reduced across ranks; sync_dist averages equal values
            self.log(f"{stage}/{name}", value, prog_bar=name in ("loss", "elbo"), sync_dist=True)
        metric.reset()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        # An epoch resumed mid-way keeps the sums restored from its checkpoint.
        if self.trainer.fit_loop.epoch_loop.batch_progress.current.processed == 0:
            self.metrics["train_means"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")
        for name, value in self.kl_schedule.logged(self.global_step).items():
            self.log(f"train/{name}", value)  # the effective beta or capacity

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def configure_optimizers(self):
        optimizer = self.optimizer(params=self.parameters())
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.scheduler_monitor,
                             "interval": "epoch"},
        }
