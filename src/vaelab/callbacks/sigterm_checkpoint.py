"""Checkpoint a run that is asked to stop (SIGTERM: `kill`, a scheduler's preemption)."""

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class CheckpointOnSigterm(L.Callback):
    """On SIGTERM, Lightning stops after the current batch; this saves that state as
    `dirpath/filename.ckpt` (by default the last.ckpt that resume=auto continues from)."""

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            trainer.save_checkpoint(self.path)
            rank_zero_info(f"SIGTERM: saved {self.path} at step {trainer.global_step}")
