"""The VAE LightningModule: encoder, posterior, prior, decoder and likelihood, trained with a
configured objective (models/objectives.py; by default -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)))
in nats per image.

The model's interface, for training, evaluation, figures, scripts and notebooks:
`posterior(x, y)` is q(z|x) (a torch Distribution with rsample, log_prob and a display `mean`),
`prior` is p(z) (`log_prob(z)`, `sample(n, generator)`), `decode(z, y)` gives the likelihood's
parameters and `likelihood.log_prob(params, x)` scores images. y is the condition of a
conditional VAE (model.condition), None otherwise.
"""

import math
import re
from collections.abc import Callable
from functools import cached_property, partial

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.console import log
from vaelab.hook_dispatch import LeanHookModule
from vaelab.metric_specs import layer_metric, names, per_image
from vaelab.models.compatibility import check_components
from vaelab.models.distributions import kl_per_dimension, kl_per_image
from vaelab.models.kl_schedules import ConstantBeta, KLSchedule, build_kl_schedule
from vaelab.models.latents import decode_means
from vaelab.models.likelihoods import BernoulliLikelihood, Likelihood
from vaelab.models.objectives import Elbo, Objective, build_objective
from vaelab.models.posteriors import DiagonalGaussianPosterior, Posterior
from vaelab.models.priors import Prior, StandardNormalPrior
from vaelab.models.running_means import RunningMeans
from vaelab.optim import apply_configured_optimizer
from vaelab.validation import check_number

STAGES = ("train", "val", "test")
#: checkpoint key of the optimiser state of the objective's own network (FactorVAE)
OBJECTIVE_OPTIMIZER = "objective_optimizer_state"


def condition_vectors(datamodule, kind: str, labels: torch.Tensor) -> torch.Tensor:
    """A batch's conditions: one-hot classes (label) or the attribute table's rows (attributes:
    CelebA's 40, or every factor value one-hot); labels [B] or [B, K] -> float [B, C]."""
    if kind == "label":
        return F.one_hot(datamodule.class_labels(labels).long(), datamodule.num_classes).float()
    return datamodule.attribute_rows(labels).float()


def condition_names(datamodule, kind: str) -> list[str]:
    """The name of each entry of the data's condition vectors of this kind."""
    return list(datamodule.class_names if kind == "label" else datamodule.attribute_names)


def condition_size(datamodule, kind: str) -> int:
    """C, the length of the data's condition vectors of this kind."""
    return datamodule.num_classes if kind == "label" else len(datamodule.attribute_names)


class VAE(LeanHookModule):
    """Encoder -> q(z|x) -> z -> decoder -> likelihood parameters; p(z) the prior."""

    #: several latent layers (models.hvae.HierarchicalVAE), which objectives made for one flat
    #: code refuse (vaelab.models.compatibility)
    hierarchical = False
    #: constructor arguments that are modules or partials, not hyperparameters
    not_hyperparameters = ("encoder", "decoder", "likelihood", "optimizer", "scheduler",
                           "kl_schedule", "objective", "posterior", "prior")

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        posterior: Posterior | None = None,
        prior: Prior | None = None,
        condition: str | None = None,
        condition_dim: int = 0,
        beta: float = 1.0,
        scheduler: Callable | None = None,
        scheduler_monitor: str = "val/elbo",
        kl_schedule: Callable[..., KLSchedule] | None = None,
        objective: Callable[..., Objective] | None = None,
    ):
        """`kl_schedule` and `objective` are partials (the configs' `_partial_: true`), built
        here with `beta`; None: a constant beta and the ELBO objective. `posterior` and `prior`
        default to a diagonal Gaussian and N(0, I). A conditional model (`condition`: label or
        attributes) has nets built for condition vectors of length `condition_dim`."""
        super().__init__()
        check_number("model.latent_dim", latent_dim, low=1, integer=True)
        check_number("model.beta", beta, low=0)
        posterior = posterior if posterior is not None else DiagonalGaussianPosterior(latent_dim)
        prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        self._check_latent_sizes(latent_dim, posterior, prior)
        check_components(type(prior), type(posterior), _component_class(objective, Elbo),
                         _component_class(kl_schedule, ConstantBeta), condition,
                         hierarchical=self.hierarchical)
        self.kl_schedule = build_kl_schedule(kl_schedule, beta)
        self.objective = build_objective(objective, self.kl_schedule, beta)
        check_number("model.condition_dim", condition_dim, low=0 if condition is None else 1,
                     integer=True)
        self.save_hyperparameters(ignore=list(self.not_hyperparameters), logger=False)
        self.encoder = encoder
        self.posterior_family = posterior
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.prior.bind(self.posterior_base)
        self.latent_dim = latent_dim
        self.condition, self.condition_dim = condition, condition_dim
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
        #: labels -> condition vectors of a conditional model, set by setup_data
        self._condition_of: Callable[[torch.Tensor], torch.Tensor] | None = None
        #: the optimiser of the objective's own network (FactorVAE's discriminator), stepped
        #: after the VAE's; and its state from a checkpoint, until that optimiser is built
        self._objective_optimizer: torch.optim.Optimizer | None = None
        self._objective_optimizer_state: dict | None = None
        self._register_load_state_dict_pre_hook(_upgrade_state_dict)

    @staticmethod
    def _check_latent_sizes(latent_dim: int, posterior: Posterior, prior: Prior) -> None:
        for key, component in (("model.posterior", posterior), ("model.prior", prior)):
            if component.latent_dim != latent_dim:
                raise ValueError(f"{key}.latent_dim={component.latent_dim} differs from "
                                 f"model.latent_dim={latent_dim}: set it to ${{model.latent_dim}}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """The sizes of the latent layers, bottom first: their codes, concatenated, are z."""
        return (self.latent_dim,)

    # -- the model ---------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        # nets written for unconditional models take x alone
        return self.encoder(x) if y is None else self.encoder(x, y)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """q(z|x) (q(z|x, y) with conditions y [B, C]) for images x [B, C, H, W]: a
        distribution over codes [B, latent_dim]."""
        return self.posterior_family(self._encode(x, y))

    def posterior_base(self, x: torch.Tensor):
        """The Gaussian part of q(z|x) (the posterior itself unless it is a flow); what the
        VampPrior mixes over its pseudo-inputs."""
        return self.posterior_family.base(self._encode(x, None))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters p(x|z); [B, latent_dim] -> [B, C', H, W]."""
        return self.decoder(z) if y is None else self.decoder(z, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean image decoded from the posterior's display mean; [B, C, H, W] -> [B, C, H, W]."""
        return decode_means(self, self.posterior(x, y).mean, y=y)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               y: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Mean images decoded from n prior codes (noise drawn on the CPU, so a seed gives the
        same codes on every device), given conditions y [n, C] if conditional; -> [n, C, H, W]."""
        if self.condition is not None and y is None:
            raise ValueError(f"a VAE with model.condition={self.condition} samples given "
                             "conditions: pass y [n, condition_dim]")
        return decode_means(self, self.prior.sample(n, generator, temperature), y=y)

    def kl_weight(self) -> float | None:
        """The KL weight (beta) at the current step; None for the capacity objective."""
        return self.kl_schedule.weight(self.global_step)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        """Per-image recon (-log p(x|z)), kl and elbo, each [B], for one z sample per image; the
        KL of each latent dim [B, D] where it exists (else None) and of each latent layer
        [B, L]; z, q, p and y."""
        q = self.posterior(x, y)
        z = q.rsample()
        p = self.prior()
        recon = self.likelihood.nll(self._checked_decode(z, y, x), x)
        kl_per_dim = kl_per_dimension(q, p)
        kl = kl_per_dim.sum(dim=1) if kl_per_dim is not None else kl_per_image(q, p, z)
        return {"recon": recon, "kl": kl, "elbo": -(recon + kl), "kl_per_dim": kl_per_dim,
                "kl_per_layer": kl[:, None], "z": z, "q": q, "p": p, "y": y}

    def _checked_decode(self, z: torch.Tensor, y: torch.Tensor | None,
                        x: torch.Tensor) -> torch.Tensor:
        return self._checked_params(self.decode(z, y), x)

    def _checked_params(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The decoder's output in float32 (likelihood_params), checked to have the shape the
        likelihood needs for x."""
        expected = (x.shape[0], *self.likelihood.param_shape(x.shape[1:]))
        if params.shape[-len(expected):] != expected:
            raise ValueError(
                f"decoder output {tuple(params.shape)} is not the {expected} that "
                f"{type(self.likelihood).__name__} needs for data {tuple(x.shape)}: give "
                "model.encoder/decoder the data's image_shape (${data.image_shape}) and "
                "model.decoder.out_channels=${vaelab.param_channels:${model.likelihood},"
                "${data.image_shape}}"
            )
        return likelihood_params(params)

    def log_importance_weights(self, x: torch.Tensor, y: torch.Tensor | None, q,
                               num_samples: int, generator: torch.Generator | None = None
                               ) -> torch.Tensor:
        """log w = log p(x|z) + log p(z) - log q(z|x) for K fresh samples z ~ q (q: this batch's
        posterior(x, y)); x [B, C, H, W] -> [K, B]. The K * B codes are decoded as one batch."""
        k, b = num_samples, x.shape[0]
        z = q.rsample((k,), generator)  # [K, B, D]
        params = self.decode(z.reshape(k * b, -1), None if y is None else _repeat(y, k))
        log_px_z = self.likelihood.log_prob(likelihood_params(params), _repeat(x, k)).view(k, b)
        # a flow scores its own last sample from what sampling computed, not by inverting
        return log_px_z + self.prior().log_prob(z) - q.log_prob(z)

    # -- data --------------------------------------------------------------------------------
    def setup_data(self, datamodule, fitting: bool = False) -> None:
        """Take what the model needs of the data to score batches: a conditional model's map from
        labels to conditions (called when fitting, validating or testing starts); when
        `fitting`, also what the prior and the objective need of the training set."""
        if fitting:
            self.prior.setup_data(datamodule)
            self.objective.setup_data(datamodule)
        if self.condition is not None:
            size = condition_size(datamodule, self.condition)
            if size != self.condition_dim:
                raise ValueError(
                    f"model.condition={self.condition}: this data has {size}-long condition "
                    f"vectors, the nets were built for model.condition_dim={self.condition_dim}: "
                    f"set model.condition_dim={size}")
            self._condition_of = partial(condition_vectors, datamodule, self.condition)

    def condition_of(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The condition vectors [B, C] of a batch's labels; None for an unconditional model."""
        if self.condition is None:
            return None
        if self._condition_of is None:
            raise RuntimeError("a conditional VAE needs its data's labels: call "
                               "model.setup_data(datamodule) first (vaelab's commands do)")
        return self._condition_of(labels)

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
    def elbo_terms(self) -> tuple[str, ...]:
        """The ELBO's per-image quantities (metric_specs.per_image): loss, elbo, recon, kl,
        bpd, and the KL of each latent layer (kl_layer_1 the bottom one) where there are
        several."""
        return per_image(len(self.layer_sizes))

    @cached_property  # read every step: the names are fixed when the model is built
    def metric_names(self) -> tuple[str, ...]:
        """The per-image quantities logged as <stage>/<name>: the ELBO's and the objective's."""
        return (*self.elbo_terms, *self.objective.terms)

    def batch_values(self, x: torch.Tensor, y: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(the loss to minimise, the logged quantities per image [B, len(metric_names)],
        forward(x, y)) for a batch x [B, C, H, W] with conditions y [B, C] or None."""
        out = self(x, y)
        value = self.objective(self, x, out, self.global_step)
        loss = value.loss.mean()
        if value.auxiliary_loss is not None:
            loss = loss + value.auxiliary_loss
        self.bits_per_dim_valid(x)
        with torch.no_grad():  # logged, never differentiated: no autograd graph to record
            bpd = -out["elbo"] / (math.prod(x.shape[1:]) * math.log(2))
            columns = {"loss": value.loss, "elbo": out["elbo"], "recon": out["recon"],
                       "kl": out["kl"], "bpd": bpd, **value.terms}
            if len(self.layer_sizes) > 1:
                columns.update({layer_metric("kl_layer", i + 1): kl for i, kl in
                                enumerate(out["kl_per_layer"].unbind(1))})
            values = torch.stack([columns[name] for name in self.metric_names], 1)
        return loss, values, out

    def _step(self, batch, stage: str) -> torch.Tensor:
        """The loss to minimise: the objective's batch mean, plus its own network's loss."""
        loss, values, _ = self.batch_values(batch[0], self.condition_of(batch[1]))
        loss_value = loss.item()  # one read of the loss (a sync on a GPU, as any check is)
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"{stage} loss is {loss_value} at global step {self.global_step}: lower "
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
        progress = names(progress=True)
        for name, value in metric.compute().items():
            if name == "bpd" and not self.reports_bpd:
                continue  # bits/dim is only meaningful for a probability mass
            # compute() already reduced across ranks; sync_dist averages equal values
            self.log(f"{stage}/{name}", value, prog_bar=name in progress, sync_dist=True)
        metric.reset()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_fit_start(self) -> None:
        self.setup_data(self.trainer.datamodule, fitting=True)

    def on_test_start(self) -> None:
        self.setup_data(self.trainer.datamodule)

    on_validation_start = on_test_start

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


def _component_class(component, default: type) -> type:
    """The class a component is or will be (a class, a functools.partial of one, or an
    instance; None: `default`)."""
    if component is None:
        return default
    component = getattr(component, "func", component)
    return component if isinstance(component, type) else type(component)


def likelihood_params(params: torch.Tensor) -> torch.Tensor:
    """Decoder outputs in at least float32: under bf16/16-bit mixed precision a likelihood sums
    thousands of per-pixel log-probabilities, which half precision would round by whole nats
    (and mixing dtypes inside it fails)."""
    return params.to(torch.promote_types(params.dtype, torch.float32))


def _repeat(t: torch.Tensor, k: int) -> torch.Tensor:
    """A batch [B, ...] repeated K times as one batch [K * B, ...], sample-major."""
    return t.expand(k, *t.shape).reshape(k * t.shape[0], *t.shape[1:])


_LEGACY_MLP_BODY = re.compile(r"^encoder\.body\.1\.(\d+\.)")


def _upgrade_state_dict(state_dict: dict, prefix: str, *args) -> None:
    """Rename, in place, the keys of checkpoints written before the posterior became a component
    (their encoders ended in a GaussianHead, and the MLP's body began with a Flatten)."""
    if f"{prefix}encoder.head.linear.weight" not in state_dict:
        return
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        new = local.replace("encoder.head.linear.", "encoder.head.")
        new = _LEGACY_MLP_BODY.sub(r"encoder.body.\1", new)
        if new != local:
            state_dict[prefix + new] = state_dict.pop(key)
