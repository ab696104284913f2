"""The KL term of the beta-VAE family: how (recon, KL, step) become the training loss.

Each schedule's `loss` returns one value per image whose batch mean is the objective, so the VAE
can average and log it like every other per-image quantity. `step` is the optimizer step.
"""

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch


def _check(name: str, value: float, low: float = 0.0) -> None:
    if not value >= low:  # also rejects NaN
        key = "model.beta" if name == "beta" else f"model.kl_schedule.{name}"
        raise ValueError(f"{key} must be >= {low:g}, got {value}")


class KLSchedule(ABC):
    """Base class; `beta` is the target KL weight (None for objectives that do not weight KL)."""

    #: the config name, model/kl_schedule=<name>
    name: str
    #: what it needs of the latent model (vaelab.models.compatibility)
    requires: frozenset[str] = frozenset()
    beta: float | None = None

    @abstractmethod
    def loss(self, recon: torch.Tensor, kl: torch.Tensor, kl_per_dim: torch.Tensor | None,
             step: int, kl_per_layer: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image loss; recon [B] (-log p(x|z)), kl [B], the KL of each latent dimension
        [B, D] where the model has one (None otherwise), and of each latent layer [B, L]
        (None: kl is one layer's) -> [B]."""

    @abstractmethod
    def logged(self, step: int) -> dict[str, float]:
        """The schedule's current values (effective beta, capacity), logged as train/<name>."""

    def weight(self, step: int) -> float | None:
        """The KL weight at `step`; None where the objective is not recon + weight * KL."""
        return None


class BetaSchedule(KLSchedule):
    """loss = recon + weight(step) * KL: a KL weight that may change with the step."""

    @abstractmethod
    def weight(self, step: int) -> float: ...

    def loss(self, recon, kl, kl_per_dim, step, kl_per_layer=None):
        weight = self.weight(step)
        # the same numbers: at weight 1 the product is only one more op and backward node
        return recon + kl if weight == 1 else recon + weight * kl

    def logged(self, step):
        return {"beta": self.weight(step)}


class ConstantBeta(BetaSchedule):
    """beta fixed for the whole run (beta = 1: the ELBO; beta > 1: Higgins et al.'s beta-VAE)."""

    name = "constant"

    def __init__(self, beta: float = 1.0):
        _check("beta", beta)
        self.beta = beta

    def weight(self, step):
        return self.beta


class LinearWarmup(BetaSchedule):
    """beta rises linearly from start_beta to beta over warmup_steps, then stays at beta."""

    name = "linear_warmup"

    def __init__(self, beta: float = 1.0, warmup_steps: int = 1000, start_beta: float = 0.0):
        _check("beta", beta)
        _check("start_beta", start_beta)
        _check("warmup_steps", warmup_steps)
        self.beta, self.start_beta, self.warmup_steps = beta, start_beta, warmup_steps

    def weight(self, step):
        progress = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        return self.start_beta + (self.beta - self.start_beta) * progress


class CyclicalAnnealing(BetaSchedule):
    """Fu et al. (2019): each cycle of cycle_steps ramps beta from 0 up over the first `ratio` of
    the cycle, then holds it; after n_cycles (if set) beta stays at its target."""

    name = "cyclical"

    def __init__(self, beta: float = 1.0, cycle_steps: int = 2000, ratio: float = 0.5,
                 n_cycles: int | None = None):
        _check("beta", beta)
        _check("cycle_steps", cycle_steps, low=1)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"model.kl_schedule.ratio must be in (0, 1], got {ratio}")
        if n_cycles is not None:
            _check("n_cycles", n_cycles, low=1)
        self.beta, self.cycle_steps, self.ratio, self.n_cycles = beta, cycle_steps, ratio, n_cycles

    def weight(self, step):
        if self.n_cycles is not None and step >= self.n_cycles * self.cycle_steps:
            return self.beta
        phase = (step % self.cycle_steps) / self.cycle_steps
        return self.beta * min(1.0, phase / self.ratio)


class FreeBits(BetaSchedule):
    """Kingma et al. (2016): each latent dimension's batch-mean KL counts as at least
    floor_per_dim nats, so dimensions under the floor get no push towards the prior."""

    name = "free_bits"
    requires = frozenset({"kl_per_dim"})

    def __init__(self, beta: float = 1.0, floor_per_dim: float = 0.25):
        _check("beta", beta)
        _check("floor_per_dim", floor_per_dim)
        self.beta, self.floor_per_dim = beta, floor_per_dim

    def weight(self, step):
        return self.beta

    def loss(self, recon, kl, kl_per_dim, step, kl_per_layer=None):
        return recon + self.beta * floored_kl(kl_per_dim, self.floor_per_dim)


class FreeBitsPerLayer(BetaSchedule):
    """Free bits with each latent layer as one group (Kingma et al. 2016 group the latents; for
    a hierarchy, as in IAF-VAE, a group per layer): each layer's batch-mean KL counts as at
    least floor_per_layer nats, so no layer is pushed to collapse onto its prior. A plain VAE
    is one layer. Needs no KL per dimension, so it works with every prior and posterior."""

    name = "free_bits_per_layer"

    def __init__(self, beta: float = 1.0, floor_per_layer: float = 1.0):
        _check("beta", beta)
        _check("floor_per_layer", floor_per_layer)
        self.beta, self.floor_per_layer = beta, floor_per_layer

    def weight(self, step):
        return self.beta

    def loss(self, recon, kl, kl_per_dim, step, kl_per_layer=None):
        per_layer = kl[:, None] if kl_per_layer is None else kl_per_layer
        return recon + self.beta * floored_kl(per_layer, self.floor_per_layer)


def floored_kl(kl_groups: torch.Tensor, floor: float) -> torch.Tensor:
    """sum_g max(floor, batch-mean KL_g) as per-image values whose batch mean it is: groups
    [B, G] under the floor contribute the constant floor (no gradient), the others themselves;
    -> [B]."""
    above = kl_groups.mean(dim=0, keepdim=True) > floor
    return torch.where(above, kl_groups, torch.full_like(kl_groups, floor)).sum(dim=1)


class CapacityAnnealing(KLSchedule):
    """Burgess et al. (2018): loss = recon + gamma * |KL - C(t)|, the capacity C(t) rising
    linearly from 0 to capacity_max nats over anneal_steps (KL is the batch mean)."""

    name = "capacity"

    def __init__(self, gamma: float = 1000.0, capacity_max: float = 25.0,
                 anneal_steps: int = 10000):
        _check("gamma", gamma)
        _check("capacity_max", capacity_max)
        _check("anneal_steps", anneal_steps)
        self.gamma, self.capacity_max, self.anneal_steps = gamma, capacity_max, anneal_steps

    def capacity(self, step: int) -> float:
        """C(t) in nats."""
        progress = min(1.0, step / self.anneal_steps) if self.anneal_steps else 1.0
        return self.capacity_max * progress

    def loss(self, recon, kl, kl_per_dim, step, kl_per_layer=None):
        c = self.capacity(step)
        # sign(mean KL - C) * (KL_i - C) has batch mean |mean KL - C| and the same gradient.
        sign = torch.sign(kl.mean() - c).detach()
        return recon + self.gamma * sign * (kl - c)

    def logged(self, step):
        return {"capacity": self.capacity(step)}


def _option_name(schedule: Callable[..., KLSchedule]) -> str:
    """The model/kl_schedule option of a schedule class or partial (its class name if none)."""
    cls = getattr(schedule, "func", schedule)
    return getattr(cls, "name", cls.__name__)


def check_schedule_options(schedule: Callable[..., KLSchedule]) -> None:
    """One line naming an option the schedule does not take: a recipe's option (e.g. a
    warm-up's `warmup_steps`) stays in model.kl_schedule when another schedule is chosen."""
    known = set(inspect.signature(getattr(schedule, "func", schedule)).parameters)
    unknown = sorted(set(getattr(schedule, "keywords", None) or {}) - known)
    if unknown:
        name = _option_name(schedule)
        options = ", ".join(sorted(known - {"beta"})) or "none"
        raise ValueError(
            f"model.kl_schedule.{unknown[0]} is not an option of model/kl_schedule={name} "
            f"(its options: {options}); a recipe set it for its own schedule: drop it with "
            f"~model.kl_schedule.{unknown[0]}")


def build_kl_schedule(schedule: Callable[..., KLSchedule] | KLSchedule | None,
                      beta: float) -> KLSchedule:
    """The schedule with `model.beta`, the one place beta is set, as its target weight.

    `schedule` is a partial from the config (`_partial_: true`) or a class; a schedule without
    a KL weight (capacity) refuses a beta that would be ignored.
    """
    if schedule is None:
        return ConstantBeta(beta)
    if isinstance(schedule, KLSchedule):
        raise TypeError("pass the schedule as a class or functools.partial, without beta: "
                        "the VAE gives it model.beta")
    check_schedule_options(schedule)
    if "beta" in inspect.signature(schedule).parameters:
        return schedule(beta=beta)
    if beta != 1.0:
        raise ValueError(
            f"model.beta={beta} has no effect with model/kl_schedule={_option_name(schedule)}: "
            "leave model.beta at 1 and set the schedule's own parameters (model.kl_schedule.*)"
        )
    return schedule()
