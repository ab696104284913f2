"""LatentViz: when to draw the latent-space figures during training, and where to send them.

What to draw is a `vaelab.viz.FigureSet`; this callback draws it every N epochs and when
training ends, on rank 0, and hands each image to every logger that takes images.
"""

import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorBoardLogger,
    WandbLogger,
)
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities import rank_zero_warn

from vaelab.callbacks.weight_averaging import averaged_weights
from vaelab.console import log
from vaelab.run_dir import RunDir
from vaelab.viz.figure_set import FigureSet
from vaelab.viz.images import save_png, to_uint8_hwc

#: loggers that take no images (DummyLogger stands in for all loggers under fast_dev_run)
NO_IMAGES = (CSVLogger, DummyLogger)


def send_image(logger: Logger, tag: str, image: torch.Tensor, step: int, stem: str) -> bool:
    """Log image float [3, H, W] to a TensorBoard, W&B or MLflow logger; False for others."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, image, global_step=step)
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[to_uint8_hwc(image)], step=step)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_image(logger.run_id, to_uint8_hwc(image),
                                    artifact_file=f"{tag}/{stem}.png")
    else:
        return False
    return True


class LatentViz(L.Callback):
    """Every `every_n_epochs` epochs (0: none) and when training ends, draws `figures` on rank 0
    and sends each to every logger that takes images (TensorBoard, W&B, MLflow) and to
    `<output_dir>/figures/<name>/epoch_XXX.png` (XXX the 1-based epoch), and says how long the
    drawing took (the epoch's line does not include it)."""

    def __init__(self, output_dir: str | Path, figures: FigureSet, every_n_epochs: int = 5,
                 tag_prefix: str = "figures"):
        if every_n_epochs < 0:
            raise ValueError(f"callbacks.latent_viz.every_n_epochs must be >= 0, "
                             f"got {every_n_epochs}")
        self.run = RunDir(output_dir)
        self.figures = figures
        self.every_n_epochs = every_n_epochs
        self.tag_prefix = tag_prefix
        self._drawable: list[str] = []
        self._drawn_at_step: int | None = None
        self._last_epoch: int | None = None
        self._warned: set[type] = set()

    def publish(self, name: str, image: torch.Tensor, loggers: Sequence[Logger], step: int,
                stem: str) -> Path:
        """Write `<output_dir>/figures/<name>/<stem>.png` and send the image to each logger."""
        path = self.run.figure(name, stem)
        if path.is_file() and path.stat().st_size:
            # Only a resumed run draws the same epoch twice; the first picture stays (written
            # whole: save_png writes through a temporary file).
            rank_zero_warn(f"{path} exists already: keeping it")
        else:
            save_png(image, path)
        for logger in loggers:
            sent = send_image(logger, f"{self.tag_prefix}/{name}", image, step, stem)
            if not sent and not isinstance(logger, NO_IMAGES) and type(logger) not in self._warned:
                self._warned.add(type(logger))
                rank_zero_warn(f"LatentViz cannot send images to {type(logger).__name__}; it "
                               "sends them to TensorBoard, W&B and MLflow loggers (and always "
                               f"writes PNGs under {self.run.figures})")
        return path

    # -- Lightning hooks -----------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # On every rank, so a bad option stops all of them before the first step.
        self._drawable = self.figures.select(pl_module.latent_dim, len(pl_module.layer_sizes))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_epoch = trainer.current_epoch
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_epoch is not None and self._drawn_at_step != trainer.global_step:
            self._draw(trainer, pl_module)

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drawn_at_step = trainer.global_step
        # debug=fdr (fast_dev_run) promises no logging and no files from training
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        started = time.monotonic()
        with averaged_weights(trainer, pl_module):  # what checkpoints and validation see
            images = self.figures.render(pl_module, trainer.datamodule, self._drawable)
        for name, image in images.items():
            self.publish(name, image, trainer.loggers, trainer.global_step,
                         f"epoch_{self._last_epoch + 1:03d}")
        log.info(f"epoch {self._last_epoch + 1}: {len(images)} figures drawn in "
                 f"{time.monotonic() - started:.1f} s ({self.run.figures})")
