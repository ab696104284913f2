"""VDVAE's guard against rare huge updates (Child 2021): an optimiser step whose gradient norm is
above a threshold, or not finite, is skipped, for any model."""

import math

import lightning as L
import torch

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
    norm is above `max_grad_norm` or not finite, every gradient of the model is dropped: the
    optimiser then changes no weight and no state of its own (Adam's moments and step count),
    and nor does an objective's own optimiser (FactorVAE's). The step still counts as one in
    global_step, the learning-rate schedule and the EMA, as in VDVAE. Logs
    train/skipped_updates (all so far) and train/grad_norm (the epoch's mean of the finite
    norms); both resume from checkpoints. Reading the norm costs one device sync per step."""

    def __init__(self, max_grad_norm: float):
        check_number("callbacks.skip_updates.max_grad_norm", max_grad_norm, low=0)
        self.max_grad_norm = max_grad_norm
        self.skipped = 0
        self._norms = [0.0, 0]  # sum and count of the epoch's finite norms

    def should_skip(self, norm: float, step: int) -> bool:
        """Whether the update of optimiser step `step` (0-based), with this norm, is skipped."""
        return not norm <= self.max_grad_norm  # NaN too

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norm = gradient_norm(optimizer)
        if math.isfinite(norm):
            self._norms[0] += norm
            self._norms[1] += 1
        if self.should_skip(norm, trainer.global_step):
            for parameter in pl_module.parameters():
                parameter.grad = None
            self.skipped += 1

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # an epoch resumed mid-way keeps the sums restored from its checkpoint
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed == 0:
            self._norms = [0.0, 0]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("train/skipped_updates", float(self.skipped))
        if self._norms[1]:
            pl_module.log("train/grad_norm", self._norms[0] / self._norms[1])

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "norms": list(self._norms)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict["skipped"]
        self._norms = list(state_dict["norms"])
