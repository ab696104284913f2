"""An exponential moving average of the weights (the EMA that VDVAE and NVAE evaluate), for any
model: Lightning's WeightAveraging callback with torch's EMA update, fixed where vaelab's runs
need it (testing a checkpoint, saving after training ends, figures).

What uses which weights: training steps the raw weights; validation (so the choice of the best
checkpoint), the test, the figures and every checkpoint's `state_dict` (what vaelab-eval, -viz
and -attr load) use the average. Checkpoints also hold the raw weights (`current_model_state`)
and the average's step count, so a resumed run continues the uninterrupted one exactly.
"""

from contextlib import contextmanager, nullcontext

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from vaelab.validation import check_number


class EMA(WeightAveraging):
    """a_1 = w_1, then a_t = decay * a_(t-1) + (1 - decay) * w_t after optimiser steps
    start_step, start_step + every_n_steps, ... (0-based) of the raw weights w. Buffers (batch
    norm statistics) are the raw model's, not averaged."""

    def __init__(self, decay: float = 0.999, start_step: int = 0, every_n_steps: int = 1):
        check_number("callbacks.ema.start_step", start_step, low=0, integer=True)
        check_number("callbacks.ema.every_n_steps", every_n_steps, low=1, integer=True)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"callbacks.ema.decay={decay}: give a number in [0, 1] (VDVAE: "
                             "0.999 to 0.9999)")
        super().__init__(use_buffers=False, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay, self.start_step, self.every_n_steps = decay, start_step, every_n_steps
        #: the raw weights when training ended (the model then holds the average)
        self._raw_at_end: dict | None = None
        self._swapped = False

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step and \
            (step_idx - self.start_step) % self.every_n_steps == 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._raw_at_end, self._swapped = None, False

    # -- which weights the model holds ---------------------------------------------------------
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self._swapped = self._average_model is not None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_train_end(self, trainer, pl_module) -> None:
        # Lightning copies the average into the model; a checkpoint saved after this (the
        # last one) must still resume from the raw weights.
        self._raw_at_end = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    @contextmanager
    def averaged(self, pl_module: L.LightningModule):
        """The model holds the averaged weights inside the block (unless it already does)."""
        swap = self._average_model is not None and not self._swapped and self._raw_at_end is None
        if swap:
            self._swap_models(pl_module)
        try:
            yield
        finally:
            if swap:
                self._swap_models(pl_module)

    # -- checkpoints -----------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is None:
            return
        if self._raw_at_end is not None:
            checkpoint["current_model_state"] = self._raw_at_end
        elif self._swapped:  # saved during validation (SIGTERM): the roles are exchanged
            checkpoint["state_dict"], checkpoint["current_model_state"] = \
                checkpoint["current_model_state"], checkpoint["state_dict"]

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Testing or validating a checkpoint evaluates its state_dict, the average: Lightning's
        # callback would load the raw weights over it whenever it has an average model.
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
            self._raw_at_end = None


def averaged_weights(trainer: L.Trainer, pl_module: L.LightningModule):
    """A context in which the model holds the EMA weights if the run averages them."""
    for callback in trainer.callbacks:
        if isinstance(callback, EMA):
            return callback.averaged(pl_module)
    return nullcontext()
