"""The VAE LightningModule: encoder, decoder and likelihood trained with a configured objective
(models/objectives.py; by default -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z))) in nats/image."""

import math
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from vaelab.console import log
from vaelab.models.elbo import gaussian_kl, reparameterize
from vaelab.models.kl_schedules import KLSchedule, build_kl_schedule
from vaelab.models.latents import decode_means
from vaelab.models.likelihoods import BernoulliLikelihood, Likelihood
from vaelab.models.objectives import Objective, build_objective
from vaelab.models.running_means import RunningMeans
from vaelab.optim import apply_configured_optimizer
from vaelab.validation import check_number

STAGES = ("train", "val", "test")
METRICS = ("loss", "elbo", "recon", "kl", "bpd")
#: checkpoint key of the optimiser state of the objective's own network (FactorVAE)
OBJECTIVE_OPTIMIZER = "objective_optimizer_state"


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
        objective: Callable[..., Objective] | None = None,
    ):
        """`kl_schedule` and `objective` are partials (the configs' `_partial_: true`), built
        here with `beta`; None: a constant beta and the ELBO objective."""
        super().__init__()
        check_number("model.latent_dim", latent_dim, low=1, integer=True)
        check_number("model.beta", beta, low=0)
        self.kl_schedule = build_kl_schedule(kl_schedule, beta)
        self.objective = build_objective(objective, self.kl_schedule, beta)
        self.save_hyperparameters(
            ignore=["encoder", "decoder", "likelihood", "optimizer", "scheduler", "kl_schedule",
                    "objective"],
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
        # Per-image values averaged over the whole split and reduced across DDP ranks by
        # torchmetrics, so logged numbers are exact dataset means. The training sums are saved
        # in checkpoints, so an epoch resumed mid-way still reports the whole epoch's means.
        self.metrics = nn.ModuleDict({f"{s}_means": RunningMeans(self.metric_names,
                                                                 persistent=s == "train")
                                      for s in STAGES})
        #: whether bits/dim are a valid measure for this likelihood on this data (first batch)
        self._bpd_valid: bool | None = None
        #: the optimiser of the objective's own network (FactorVAE's discriminator), stepped
        #: after the VAE's; and its state from a checkpoint, until that optimiser is built
        self._objective_optimizer: torch.optim.Optimizer | None = None
        self._objective_optimizer_state: dict | None = None

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
        also kl_per_dim, z, mu and logvar, each [B, latent_dim]."""
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
                "z": z, "mu": mu, "logvar": logvar}

    # -- Lightning ---------------------------------------------------------------------------
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

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The per-image quantities logged as <stage>/<name>: the ELBO's and the objective's."""
        return (*METRICS, *self.objective.terms)

    def batch_values(self, x: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss to minimise, the logged quantities per image [B, len(metric_names)],
        forward(x)) for a batch x [B, C, H, W]."""
        out = self(x)
        value = self.objective(self, x, out, self.global_step)
        loss = value.loss.mean()
        if value.auxiliary_loss is not None:
            loss = loss + value.auxiliary_loss
        self.bits_per_dim_valid(x)
        bpd = -out["elbo"] / (x[0].numel() * math.log(2))
        terms = [value.terms[name] for name in self.objective.terms]
        values = torch.stack([value.loss, out["elbo"], out["recon"], out["kl"], bpd, *terms], 1)
        return loss, values, out

    def _step(self, batch, stage: str) -> torch.Tensor:
        """The loss to minimise: the objective's batch mean, plus its own network's loss."""
        loss, values, _ = self.batch_values(batch[0])
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage} loss is {loss.item()} at global step {self.global_step}: lower "
                "model.optimizer.lr, set trainer.gradient_clip_val, or check the data for NaNs"
            )
        self.metrics[f"{stage}_means"].update(values)
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

    def on_fit_start(self) -> None:
        self.objective.setup_data(self.trainer.datamodule)

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
        own = set(self.objective.parameters())  # trained by the objective's own optimiser
        optimizer = self.optimizer(params=[p for p in self.parameters() if p not in own])
        self._objective_optimizer = self._build_objective_optimizer()
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.scheduler_monitor,
                             "interval": "epoch"},
        }

    # -- the optimiser of the objective's own network (FactorVAE's discriminator) ------------
    # It is not one of Lightning's optimisers: Lightning 2 runs several only under manual
    # optimisation, which would leave LR schedulers unstepped, count every optimiser's step in
    # global_step and refuse trainer.gradient_clip_val. So the VAE's step (automatic) is
    # followed by this one, from the same backward pass (see objectives.FactorVAE), clipped
    # alike, and its state travels in checkpoints under OBJECTIVE_OPTIMIZER.
    def _build_objective_optimizer(self) -> torch.optim.Optimizer | None:
        make = self.objective.own_optimizer
        if make is None:
            return None
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                f"model/objective={self.objective.name} trains its own network outside "
                "Lightning's loss scaling: use trainer.precision=bf16-mixed or 32-true, not "
                "16-mixed")
        optimizer = make(params=self.objective.parameters())
        if self._objective_optimizer_state is not None:
            # Resuming: as RunState does for the VAE's optimiser, the configured settings win
            # over the checkpoint's.
            optimizer.load_state_dict(self._objective_optimizer_state)
            self._objective_optimizer_state = None
            changes = apply_configured_optimizer(optimizer, getattr(make, "keywords", {}), [])
            if changes:
                log.info(f"resumed model/objective={self.objective.name}'s optimiser with the "
                         "configured settings, not the checkpoint's: " + ", ".join(changes))
        return optimizer

    @property
    def objective_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser of the objective's own network, once fitting has built it."""
        return self._objective_optimizer

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._objective_optimizer is not None:
            self._objective_optimizer.step()
            self._objective_optimizer.zero_grad()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if self._objective_optimizer is not None:
            self.clip_gradients(self._objective_optimizer, gradient_clip_val,
                                gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._objective_optimizer is not None:
            checkpoint[OBJECTIVE_OPTIMIZER] = self._objective_optimizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Loaded before configure_optimizers builds the optimiser (Lightning restores the
        # module, then sets up the strategy and its optimisers).
        self._objective_optimizer_state = checkpoint.get(OBJECTIVE_OPTIMIZER)
