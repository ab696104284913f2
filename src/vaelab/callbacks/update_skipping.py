"""VDVAE's guard against rare huge updates (Child 2021): an optimiser step whose gradient norm is
above a threshold, or not finite, is skipped, for any model."""

import math
import statistics
from collections import deque

import lightning as L
import torch

from vaelab.console import log
from vaelab.validation import check_number


def gradient_norm(optimizer: torch.optim.Optimizer) -> float:
    """The L2 norm of the gradients of the optimiser's parameters, all taken as one vector."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float())
                                                        for g in grads])))


class SkipLargeUpdates(L.Callback):
    """Before each optimiser step (after backward, before gradient clipping), if the gradient
    norm is not finite, above `max_grad_norm` (VDVAE's absolute threshold), or above
    `max_norm_ratio` times the median of the last `window` kept steps' norms (a spike against
    the recent scale, which grows as training sharpens the likelihood), every gradient of the
    model is dropped: the optimiser then changes no weight and no state of its own (Adam's
    moments and step count), and nor does an objective's own optimiser (FactorVAE's). The step
    still counts in global_step, the learning-rate schedule and the EMA, as in VDVAE.

    Logs train/skipped_updates (all so far) and train/grad_norm (the epoch's mean of the finite
    norms), and warns once `warn_after` steps in a row were skipped (training has stalled:
    the threshold is too low). Everything resumes from checkpoints. Reading the norm costs one
    device sync per step."""

    def __init__(self, max_grad_norm: float | None = None, max_norm_ratio: float | None = None,
                 window: int = 100, warn_after: int = 20):
        if max_grad_norm is None and max_norm_ratio is None:
            raise ValueError("callbacks.skip_updates needs max_grad_norm (an absolute norm) or "
                             "max_norm_ratio (times the recent median norm), or both")
        if max_grad_norm is not None:
            check_number("callbacks.skip_updates.max_grad_norm", max_grad_norm, low=0)
        if max_norm_ratio is not None:
            check_number("callbacks.skip_updates.max_norm_ratio", max_norm_ratio, low=1)
        check_number("callbacks.skip_updates.window", window, low=1, integer=True)
        check_number("callbacks.skip_updates.warn_after", warn_after, low=1, integer=True)
        self.max_grad_norm, self.max_norm_ratio = max_grad_norm, max_norm_ratio
        self.window, self.warn_after = window, warn_after
        self.skipped = 0
        self._in_a_row = 0
        self._recent: deque[float] = deque(maxlen=window)  # the kept steps' norms
        self._norms = [0.0, 0]  # sum and count of the epoch's finite norms

    def should_skip(self, norm: float, step: int) -> bool:
        """Whether the update of optimiser step `step` (0-based), with this norm, is skipped."""
        if not math.isfinite(norm):
            return True
        if self.max_grad_norm is not None and norm > self.max_grad_norm:
            return True
        return (self.max_norm_ratio is not None and len(self._recent) == self.window
                and norm > self.max_norm_ratio * statistics.median(self._recent))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norm = gradient_norm(optimizer)
        if math.isfinite(norm):
            self._norms[0] += norm
            self._norms[1] += 1
        if not self.should_skip(norm, trainer.global_step):
            self._recent.append(norm)
            self._in_a_row = 0
            return
        for parameter in pl_module.parameters():
            parameter.grad = None
        self.skipped += 1
        self._in_a_row += 1
        if self._in_a_row == self.warn_after:
            log.warning(f"the last {self.warn_after} updates were all skipped (gradient norm "
                        f"{norm:.4g}): training has stalled; raise "
                        "callbacks.skip_updates.max_grad_norm or use max_norm_ratio")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # an epoch resumed mid-way keeps the sums restored from its checkpoint
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed == 0:
            self._norms = [0.0, 0]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("train/skipped_updates", float(self.skipped))
        if self._norms[1]:
            pl_module.log("train/grad_norm", self._norms[0] / self._norms[1])

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "norms": list(self._norms),
                "recent": list(self._recent), "in_a_row": self._in_a_row}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict["skipped"]
        self._norms = list(state_dict["norms"])
        self._recent = deque(state_dict["recent"], maxlen=self.window)
        self._in_a_row = state_dict["in_a_row"]
