"""Checkpoints: written atomically, loaded safely, stamped with the run's config and random
states; where a run continues from (ckpt_path=..., resume=auto); a run rebuilt from one."""

import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.builders import build
from vaelab.console import log
from vaelab.optim import apply_configured_optimizer
from vaelab.run_dir import INTERRUPTED, RunDir

RESUME_MODES = (None, "auto")


class CheckpointError(ValueError):
    """A file that is not a readable, safe vaelab checkpoint."""


def load_checkpoint(ckpt_path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """torch.load a checkpoint with weights_only=True: tensors, numbers, strings and containers
    only, so a crafted file cannot run code. Errors name the file and what to pass instead.
    `mmap`: map the tensors' storage instead of reading it (enough to check the file)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt "
            "(or another .ckpt that vaelab-train wrote)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, i.e. running the file's code: never that.
        lines = str(err).splitlines()
        detail = next((line for line in lines if "GLOBAL" in line or "global" in line), "")
        if not detail:
            raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file): pass "
                                  "a .ckpt that vaelab-train wrote") from None
        raise CheckpointError(
            f"{path} holds objects that a checkpoint written by vaelab-train never holds "
            f"{detail.strip()!r}: refusing to load it, as loading such objects can run "
            "arbitrary code. Use a .ckpt that vaelab-train wrote."
        ) from None
    except Exception as err:  # torch.load fails in many ways on a file that is not its own
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'empty'}): it is truncated, corrupt or "
            "another kind of file. Pass a .ckpt that vaelab-train wrote"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves through a temporary file in the same folder and loads with `load_checkpoint`.

    Lightning writes checkpoints in place, so a run killed mid-write (SIGKILL, a node failure, a
    full disk) would leave a truncated last.ckpt; a rename within one folder is atomic, so the
    previous checkpoint stays whole until the new one is complete.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # remote storage: no rename there, save as Lightning does
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path, map_location=map_location)


# -- what a checkpoint carries beyond Lightning's state --------------------------------------
def collect_rng_states() -> dict:
    """Plain tensors, lists and numbers only, so checkpoints still load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(),
              "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class RunState(L.Callback):
    """Stamps the run's resolved config into every checkpoint (so vaelab-eval/-viz/-attr can
    rebuild the run from the file alone), saves and restores the random generators' states,
    and on resume applies the configured optimiser hyperparameters.

    RNG states are restored at train start, after the sanity-check validation, which draws
    noise that the uninterrupted run drew before its first epoch. Every rank is seeded alike
    and draws alike, so rank 0's states (the ones saved) are every rank's.
    """

    def __init__(self, run_config: dict, on_start: Callable[[], None] | None = None):
        self.run_config = run_config
        #: called when training really starts (data loaded, checkpoint restored)
        self.on_start = on_start
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.run_config

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_start is not None:
            self.on_start()
        if self._pending is None:
            return
        set_rng_states(self._pending)
        self._pending = None
        configured = getattr(pl_module.optimizer, "keywords", {})
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
        for optimizer in trainer.optimizers:
            changes = apply_configured_optimizer(optimizer, configured, schedulers)
            if changes:
                log.info("resumed with the configured optimiser settings, not the checkpoint's: "
                         + ", ".join(changes))


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt after every epoch, whatever the monitored metric does.

    Lightning's ModelCheckpoint saves at the end of an epoch, before the epoch's LR-scheduler
    step, and a run resumed from such a file skips that step (Lightning does not replay it);
    this one saves once the step is done (at the next epoch's start, and when training ends),
    so a resumed run repeats an uninterrupted one, scheduler included.
    """

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._saved_at_step: int | None = None

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or \
                self._saved_at_step == trainer.global_step:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        self._saved_at_step = trainer.global_step  # a resumed run starts from a saved state

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self._save(trainer)


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `{epoch}` in file names 1-based as the console shows
    epochs: the first epoch's checkpoint is epoch_001.ckpt."""

    def format_checkpoint_name(self, metrics: dict, filename: str | None = None,
                               ver: int | None = None, prefix: str | None = None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Lightning's OnExceptionCheckpoint, for SIGTERM (`kill`, a scheduler's preemption) while
    fitting: every rank receives it, so the collective save cannot hang on one rank."""

    def __init__(self, dirpath: str, filename: str = INTERRUPTED):
        super().__init__(dirpath, filename)

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            super().on_exception(trainer, pl_module, exception)
            log.warning(f"SIGTERM: saved {self.ckpt_path} at step {trainer.global_step}")


# -- where a run continues from --------------------------------------------------------------
def resume_candidates(run: RunDir) -> list[Path]:
    """The checkpoints ckpt_path="last" chooses from, newest first: last*.ckpt and the
    interrupt checkpoint."""
    found = [*run.checkpoints.glob("last*.ckpt"), run.checkpoints / f"{INTERRUPTED}.ckpt"]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime,
                  reverse=True)


def check_resumable(path: Path, run: RunDir) -> None:
    """Open `path` to be sure it is whole (Lightning then loads it for real); the error names the
    intact epoch checkpoints."""
    try:
        load_checkpoint(path, mmap=True)
    except CheckpointError as err:
        others = sorted(str(p) for p in run.checkpoints.glob("epoch_*.ckpt"))
        hint = (f"; the epoch checkpoints here may be intact: continue from one with "
                f"ckpt_path=<one of {others}> and a new hydra.run.dir") if others else ""
        raise CheckpointError(f"resume=auto cannot continue from {path}: {err}{hint}") from None


def resume_from(run: RunDir, ckpt_path: str | None, resume: str | None,
                run_dir_named: bool) -> str | None:
    """The checkpoint trainer.fit continues from: `ckpt_path`; for resume=auto the newest of
    the run directory's last*.ckpt and interrupted.ckpt (the choice Lightning's
    ckpt_path="last" makes, made here so the file is checked before the directory is
    touched); None for a fresh start."""
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be null or auto, got {resume!r}")
    if resume == "auto":
        if ckpt_path:
            raise ValueError("give either ckpt_path=<checkpoint> or resume=auto, not both")
        candidates = resume_candidates(run)
        if not candidates:
            where = "" if run_dir_named else (
                " (a new directory: resume=auto continues a run only when hydra.run.dir names "
                "its directory)")
            log.info(f"resume=auto: no checkpoint in {run.checkpoints}{where}; starting a new "
                     "run there")
            refuse_other_runs(run, None)
            return None
        check_resumable(candidates[0], run)
        log.info(f"resume=auto: continuing from {candidates[0]}")
        return str(candidates[0])
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path={ckpt_path} does not exist: pass a .ckpt that vaelab-train wrote, "
                "e.g. <run dir>/checkpoints/last.ckpt, or use hydra.run.dir=<run dir> resume=auto"
            )
        load_checkpoint(path, mmap=True)  # refuse an unsafe or damaged file before anything
    refuse_other_runs(run, ckpt_path)
    return ckpt_path


def refuse_other_runs(run: RunDir, ckpt_path: str | None) -> None:
    """A run directory that holds checkpoints is trained into only to continue that run."""
    if not run.has_checkpoints():
        return
    if ckpt_path and Path(ckpt_path).expanduser().resolve().parent == run.checkpoints.resolve():
        return
    raise FileExistsError(
        f"{run.checkpoints} already holds checkpoints of an earlier run: choose a new "
        f"hydra.run.dir, or continue that run with hydra.run.dir={run.path} resume=auto"
    )


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint by the monitored metric (first monitoring ModelCheckpoint)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
            return callback.best_model_path
    return None


def interrupt_checkpoint(trainer: L.Trainer) -> Path | None:
    """The checkpoint InterruptCheckpoint saved when the run was stopped, if any."""
    for callback in trainer.callbacks:
        if isinstance(callback, OnExceptionCheckpoint) and Path(callback.ckpt_path).is_file():
            return Path(callback.ckpt_path)
    return None


# -- a trained run, rebuilt ------------------------------------------------------------------
def upgrade_run_config(run_cfg: DictConfig) -> DictConfig:
    """A run config written before the posterior became a component, in today's form: its
    encoder produced (mu, logvar) for `latent_dim` codes, i.e. 2 * latent_dim features of a
    diagonal Gaussian posterior (the default)."""
    encoder = OmegaConf.select(run_cfg, "model.encoder")
    if encoder is not None and "latent_dim" in encoder and "out_features" not in encoder:
        with open_dict(run_cfg):
            encoder.out_features = 2 * encoder.pop("latent_dim")
    return run_cfg


def load_run(ckpt_path: str | Path, data_dir: str | None = None):
    """(the training run's config, its model with the checkpoint's weights in eval mode, its
    DataModule); `data_dir` replaces the data folder the run was trained from."""
    ckpt = load_checkpoint(ckpt_path)
    if "run_config" not in ckpt:
        raise CheckpointError(f"{ckpt_path} has no run_config: it was not written by vaelab-train")
    run_cfg = upgrade_run_config(OmegaConf.create(ckpt["run_config"]))
    if data_dir is not None and "data_dir" in run_cfg.data:
        with open_dict(run_cfg):
            run_cfg.data.data_dir = data_dir
    model = build(run_cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return run_cfg, model, build(run_cfg.data)


def setup_run_data(datamodule, stage: str | None = None) -> None:
    """prepare_data + setup of a rebuilt run's DataModule; a missing data folder's error names
    the `data_dir=` option of vaelab-eval, -viz and -attr."""
    try:
        datamodule.prepare_data()
        datamodule.setup(stage)
    except FileNotFoundError as err:
        # The data module's own message names the training option data.data_dir.
        message = str(err).replace("data.data_dir", "data_dir=<folder>")
        raise FileNotFoundError(
            f"{message}\nThe data is not where the run was trained from: give its folder as "
            "data_dir=<folder> (or set VAELAB_DATA_DIR)"
        ) from None
