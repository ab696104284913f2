"""Progress: a rich bar on a terminal; plain log lines where the output is a file (SLURM, nohup,
a pipe, joblib workers), where a redrawn bar shows nothing until the end. Both show the current
epoch's running means (not the previous epoch's). `EpochSummary` logs one line of metrics per
epoch, with or without a bar, so the console and the run's log file always have them.

Epochs are shown 1-based everywhere (bar, lines, and the epoch_XXX file names of checkpoints and
figures): "epoch 1/20" is the first epoch, and its files are epoch_001.
"""

import sys
import time
from datetime import timedelta

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from vaelab.console import log
from vaelab.metric_specs import names, per_image


def shown() -> tuple[str, ...]:
    """The metrics a progress line shows, in this order: the per-image columns metric_specs
    marks `progress` (train/loss, train/elbo, ...), of training and validation."""
    progress = names(progress=True)
    return tuple(f"{stage}/{name}" for stage in ("train", "val")
                 for name in per_image() if name in progress)


def current_metrics(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
    """The epoch-so-far training means (this rank's) and the latest validation metrics."""
    wanted = shown()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in wanted}
    running = getattr(pl_module, "running_means", None)
    if running is not None:
        metrics.update({f"train/{k}": v for k, v in running("train").items()
                        if f"train/{k}" in wanted})
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={metrics[k]:.3f}" for k in shown() if k in metrics)


def epoch_summary(trainer: L.Trainer, pl_module: L.LightningModule, seconds: float) -> str:
    return (f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done in {seconds:.1f} s: "
            + format_metrics(current_metrics(trainer, pl_module)))


class EpochSummary(L.Callback):
    """One line per epoch: its duration (training and validation; for a run resumed mid-epoch,
    since it resumed) and the finished epoch's train and val metrics."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning skips on_train_epoch_start for an epoch resumed in the middle
        self._started = time.monotonic()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Callbacks run before the module's on_train_epoch_end, which logs and resets the
        # epoch's means, so these are the whole finished epoch's numbers.
        if trainer.is_global_zero:
            log.info(epoch_summary(trainer, pl_module, time.monotonic() - self._started))


class RichProgress(RichProgressBar):
    """Lightning's rich bar, showing the current epoch's running means and the epoch 1-based
    ("Epoch 1/20", as the lines and file names)."""

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.update({k: f"{v:.3f}" for k, v in current_metrics(trainer, pl_module).items()})
        return items

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's own reads "Epoch 0/19" for the first of 20 epochs
        description = super()._get_train_description(current_epoch + 1)
        if self.trainer.max_epochs is not None:
            description = description.replace(f"/{self.trainer.max_epochs - 1}",
                                              f"/{self.trainer.max_epochs}", 1)
        return description


class PlainProgress(ProgressBar):
    """A log line every `every_n_steps` steps or `every_n_seconds` seconds, whichever comes
    first (step, it/s, ETA, the epoch's running means), and one per epoch."""

    def __init__(self, every_n_steps: int = 500, every_n_seconds: float = 30.0):
        super().__init__()
        self.every_n_steps, self.every_n_seconds = every_n_steps, every_n_seconds
        self._enabled = True
        self._last_line = 0.0
        self._start = 0.0
        #: the batch index the rate is timed from (a resumed epoch starts mid-way); None until
        #: the first batch after the timer started
        self._first_batch: int | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _due(self, batch_idx: int) -> bool:
        if self._first_batch is None:  # what the rate is timed from
            self._first_batch = batch_idx
        now = time.monotonic()
        if (batch_idx + 1) % self.every_n_steps == 0 or now - self._last_line >= \
                self.every_n_seconds:
            self._last_line = now
            return True
        return False

    def _start_timer(self) -> None:
        self._start = self._last_line = time.monotonic()
        self._first_batch = None

    def _rate_and_eta(self, batch_idx: int, total: float) -> str:
        """The rate of the batches since the timer started (not of those a resumed epoch
        skipped), in it/s or, below one, s/it; the ETA of the `total` batches at that rate."""
        timed = batch_idx + 1 - self._first_batch
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = timed / elapsed
        left = (total - batch_idx - 1) / rate if total != float("inf") else float("nan")
        eta = str(timedelta(seconds=round(left))) if left == left else "?"
        shown = f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"
        return f"{shown}, ETA {eta}"

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_timer()  # Lightning skips on_train_epoch_start for a resumed epoch
        if trainer.is_global_zero and self._enabled:
            log.info(f"training: {trainer.max_epochs} epochs of {self.total_train_batches} steps")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start_timer()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not (self._enabled and trainer.is_global_zero and self._due(batch_idx)):
            return
        total = self.total_train_batches
        log.info(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {batch_idx + 1}/"
                 f"{total} ({self._rate_and_eta(batch_idx, total)}) "
                 + format_metrics(current_metrics(trainer, pl_module)))

    def on_test_start(self, trainer, pl_module) -> None:
        self._start_timer()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if not (self._enabled and trainer.is_global_zero and self._due(batch_idx)):
            return
        self.has_dataloader_changed(dataloader_idx)  # what the batch totals are counted for
        total = self.total_test_batches_current_dataloader
        log.info(f"testing: batch {batch_idx + 1}/{total} "
                 f"({self._rate_and_eta(batch_idx, total)})")


def progress_bar(refresh_rate: int = 10, every_n_steps: int = 500,
                 every_n_seconds: float = 30.0, plain: bool | None = None) -> ProgressBar:
    """The rich bar when stdout is a terminal, else plain lines (`plain` forces either)."""
    if plain is None:
        plain = not sys.stdout.isatty()
    if plain:
        return PlainProgress(every_n_steps, every_n_seconds)
    return RichProgress(refresh_rate=refresh_rate)

