"""LatentViz: draw the latent-space figures during training and hand them to every logger."""

from collections.abc import Mapping, Sequence
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
from omegaconf import DictConfig, OmegaConf

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.viz.images import save_png, to_uint8_hwc
from vaelab.viz.render import (
    FIGURES,
    check_figures,
    drawable_figures,
    images_needed,
    render_figures,
)

#: loggers that take no images (DummyLogger stands in for all loggers under fast_dev_run)
NO_IMAGES = (CSVLogger, DummyLogger)


def fixed_images(datamodule: InMemoryDataModule, split: str,
                 n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a split as floats in [0, 1] [n, C, H, W], with class ids [n]."""
    if not isinstance(datamodule, InMemoryDataModule):
        raise TypeError(
            f"LatentViz draws from a vaelab InMemoryDataModule, got {type(datamodule).__name__}:"
            " subclass InMemoryDataModule, or turn the figures off with callbacks.latent_viz=null"
        )
    datamodule.setup("validate")
    if split not in datamodule.splits:
        raise ValueError(f"callbacks.latent_viz.split={split!r} is not one of the data's splits "
                         f"{sorted(datamodule.splits)}")
    images, labels = datamodule.splits[split]
    return datamodule.to_float(images[:n], train=False), datamodule.class_labels(labels[:n])


class LatentViz(L.Callback):
    """Every `every_n_epochs` epochs (0: none) and when training ends, draws `figures` from a
    fixed set of images of `split` on rank 0, and sends each to every logger that takes images
    (TensorBoard, W&B, MLflow) and to `<output_dir>/figures/<name>/epoch_XXX.png`.

    `figure_options` holds one mapping per figure name with that figure's options (see
    conf/callbacks/latent_viz.yaml); the figures are in `vaelab.viz.FIGURES`.
    """

    def __init__(self, output_dir: str | Path, figures: Sequence[str], every_n_epochs: int = 5,
                 split: str = "val", batch_size: int = 1000, tag_prefix: str = "figures",
                 **figure_options: Mapping):
        if every_n_epochs < 0:
            raise ValueError(f"callbacks.latent_viz.every_n_epochs must be >= 0, "
                             f"got {every_n_epochs}")
        unknown = sorted(set(figure_options) - set(FIGURES))
        if unknown:
            raise ValueError(f"callbacks.latent_viz has options for unknown figure(s) {unknown};"
                             f" figures are {list(FIGURES)}")
        self.output_dir = Path(output_dir)
        self.figures = list(figures)
        self.every_n_epochs = every_n_epochs
        self.split = split
        self.batch_size = batch_size
        self.tag_prefix = tag_prefix
        self.options = {name: (OmegaConf.to_container(opts) if isinstance(opts, DictConfig)
                               else dict(opts)) for name, opts in figure_options.items()}
        self._images: tuple[torch.Tensor, torch.Tensor] | None = None
        self._drawable: list[str] = []
        self._drawn_at_step: int | None = None
        self._last_epoch: int | None = None
        self._warned: set[type] = set()

    # -- drawing (also used by vaelab-viz, without a trainer) ------------------------------------
    def select(self, latent_dim: int) -> list[str]:
        """Check the options against this latent size; the figures it allows."""
        check_figures(self.figures, self.options, latent_dim)
        return drawable_figures(self.figures, latent_dim)

    def render(self, model: L.LightningModule, datamodule: InMemoryDataModule,
               figures: Sequence[str]) -> dict[str, torch.Tensor]:
        """{name: image float [3, H, W]} drawn in eval mode on the fixed images."""
        if self._images is None:
            self._images = fixed_images(datamodule, self.split,
                                        images_needed(figures, self.options))
        images, labels = (t.to(model.device) for t in self._images)
        was_training = model.training
        model.eval()
        try:
            return render_figures(model, images, labels, figures, self.options, self.batch_size)
        finally:
            model.train(was_training)

    def publish(self, name: str, image: torch.Tensor, loggers: Sequence[Logger], step: int,
                stem: str) -> Path:
        """Write `<output_dir>/figures/<name>/<stem>.png` and send the image to each logger."""
        path = self.output_dir / "figures" / name / f"{stem}.png"
        if path.exists():
            # Only a resumed run draws the same epoch twice; the first picture stays.
            rank_zero_warn(f"{path} exists already: keeping it")
        else:
            save_png(image, path)
        tag = f"{self.tag_prefix}/{name}"
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, global_step=step)
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=tag, images=[to_uint8_hwc(image)], step=step)
            elif isinstance(logger, MLFlowLogger):
                logger.experiment.log_image(logger.run_id, to_uint8_hwc(image),
                                            artifact_file=f"{tag}/{stem}.png")
            elif not isinstance(logger, NO_IMAGES) and type(logger) not in self._warned:
                self._warned.add(type(logger))
                rank_zero_warn(f"LatentViz cannot send images to {type(logger).__name__}; it "
                               "sends them to TensorBoard, W&B and MLflow loggers (and always "
                               f"writes PNGs under {self.output_dir / 'figures'})")
        return path

    # -- Lightning hooks -----------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # On every rank, so a bad option stops all of them before the first step.
        self._drawable = self.select(pl_module.latent_dim)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_epoch = trainer.current_epoch
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._draw(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_epoch is not None and self._drawn_at_step != trainer.global_step:
            self._draw(trainer, pl_module)

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._drawn_at_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        images = self.render(pl_module, trainer.datamodule, self._drawable)
        for name, image in images.items():
            self.publish(name, image, trainer.loggers, trainer.global_step,
                         f"epoch_{self._last_epoch:03d}")
