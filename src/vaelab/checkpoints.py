"""Checkpoints: written atomically, loaded safely, stamped with the run's config and random
states; where a run continues from (ckpt_path=..., resume=auto); a run rebuilt from one."""

import os
import pickle
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab import interrupts
from vaelab.atomic import atomic_path, remove_stale
from vaelab.builders import build
from vaelab.console import log
from vaelab.optim import apply_configured_optimizer
from vaelab.run_dir import CHECKPOINTS, INTERRUPTED, Attempt, RunDir, continue_hint
from vaelab.trust import check_stored_config
from vaelab.validation import check_required

RESUME_MODES = (None, "auto")
#: checkpoint key of the metrics logged when it was saved (RunState)
RUN_METRICS = "run_metrics"


class CheckpointError(ValueError):
    """A file that is not a readable, safe vaelab checkpoint."""


def load_checkpoint(ckpt_path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """torch.load a checkpoint with weights_only=True: tensors, numbers, strings and containers
    only, so a crafted file cannot run code. Errors name the file and what to pass instead.
    `mmap`: map the tensors' storage instead of reading it (enough to check the file)."""
    path = checkpoint_file(ckpt_path)
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
            f"{str(err).splitlines()[0].split('. ')[0] if str(err) else 'empty'}): it is "
            "truncated, corrupt or "
            "another kind of file. Pass a .ckpt that vaelab-train wrote"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def checkpoint_file(ckpt_path: str | Path, key: str = "ckpt_path") -> Path:
    """`ckpt_path` as a path to an existing file; the error for a folder names the checkpoints
    inside it, and for a missing file what to pass."""
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.ckpt")) or sorted((path / CHECKPOINTS).glob("*.ckpt"))
        hint = f"e.g. {key}={found[-1]}" if found else "it holds no .ckpt file"
        raise IsADirectoryError(f"{key}={ckpt_path} is a folder, not a checkpoint file: pass one "
                                f"of the .ckpt files in it ({hint})")
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={ckpt_path} does not exist: pass a .ckpt that vaelab-train wrote, e.g. "
            "<run dir>/checkpoints/last.ckpt, or use hydra.run.dir=<run dir> resume=auto")
    return path


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
        remove_stale(path, "checkpoint")
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)

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
    """Stamps the run's resolved config and latest metrics into every checkpoint (so vaelab-eval,
    -viz and -attr can rebuild the run from the file alone, and a finished run resumed from it
    returns the numbers it ended with), saves and restores the random generators' states, and
    on resume applies the configured optimiser hyperparameters.

    RNG states are restored at train start, after the sanity-check validation, which draws
    noise that the uninterrupted run drew before its first epoch. Every rank is seeded alike
    and draws alike, so rank 0's states (the ones saved) are every rank's.
    """

    def __init__(self, run_config: dict, on_start: Callable[[], None] | None = None):
        self.run_config = run_config
        #: called when training really starts (data loaded, checkpoint restored)
        self.on_start = on_start
        #: the metrics the restored checkpoint was saved with (train/*, val/*, lr-*)
        self.restored_metrics: dict[str, float] = {}
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.run_config
        checkpoint[RUN_METRICS] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.restored_metrics = dict(checkpoint.get(RUN_METRICS, {}))

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

    Lightning's ModelCheckpoint saves at the end of an epoch, before the epoch's plateau
    LR-scheduler step, and a run resumed from such a file skips that step (Lightning does not
    replay it); this one saves once the step is done (at the next epoch's start, and when
    training ends), so a resumed run repeats an uninterrupted one, scheduler included.
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
        # Lightning (2.6) calls this hook after counting the new epoch as "ready" and before
        # resetting the finished epoch's batch counters. Saved as it stands, the file would
        # resume into an epoch that counts as already trained; saved as the end of the
        # finished epoch (what on_train_end saves), it resumes into a fresh epoch.
        progress = trainer.fit_loop.epoch_progress
        if progress.current.ready == progress.current.completed:
            return  # not a new epoch: resumed at an epoch's start, nothing to save
        progress.total.ready -= 1
        progress.current.ready -= 1
        try:
            self._save(trainer)
        finally:
            progress.total.ready += 1
            progress.current.ready += 1

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        self._save(trainer)


class RunModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with `{epoch}` in file names 1-based, as the console shows
    epochs (the first epoch's checkpoint is epoch_001.ckpt), and whose state follows its run
    directory: a run moved (or copied) elsewhere and continued there keeps its best checkpoint
    and score, found by file name in its own checkpoints folder (Lightning would keep only the
    old absolute path)."""

    def format_checkpoint_name(self, metrics: dict, filename: str | None = None,
                               ver: int | None = None, prefix: str | None = None) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(relocated(state_dict, self.dirpath))


def relocated(state: dict, dirpath: str | None) -> dict:
    """A ModelCheckpoint state with its paths moved into `dirpath` when that folder holds the
    files the state names (or, naming none, any checkpoint): the run was moved or copied and
    continues there. A state loaded into a new run's empty folder stays as it is."""
    here = Path(dirpath) if dirpath else None
    if here is None or state.get("dirpath") == dirpath or not here.is_dir():
        return state
    paths = ("best_model_path", "kth_best_model_path", "last_model_path")
    names = {Path(p).name for p in [*(state.get(k) for k in paths),
                                    *state.get("best_k_models", {})] if p}
    if not (all((here / n).is_file() for n in names) if names else any(here.glob("*.ckpt"))):
        return state

    def moved(path):
        return str(here / Path(path).name) if path else path

    return {**state, "dirpath": dirpath, **{key: moved(state.get(key)) for key in paths},
            "best_k_models": {moved(k): v for k, v in state.get("best_k_models", {}).items()}}


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Lightning's OnExceptionCheckpoint, for SIGTERM (`kill`, a scheduler's preemption) and
    Ctrl-C while training: every rank receives it, so the collective save cannot hang on one
    rank."""

    def __init__(self, dirpath: str, filename: str = INTERRUPTED):
        super().__init__(dirpath, filename)

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.training:
            super().on_exception(trainer, pl_module, exception)
            log.warning(f"saved {self.ckpt_path} at step {trainer.global_step}")


# -- where a run continues from --------------------------------------------------------------
def checkpoint_rank(path: Path, step: int) -> tuple:
    """How recent a checkpoint is: its optimiser step, then its kind (at one step, last.ckpt
    and interrupted.ckpt hold the state after the epoch's scheduler step, epoch_*.ckpt the
    state before it), then its modification time."""
    after_scheduler = path.stem.startswith("last") or path.stem == INTERRUPTED
    return step, after_scheduler, path.stat().st_mtime


def newest_intact_checkpoint(run: RunDir) -> Path | None:
    """The checkpoint of the run directory that resume=auto continues from: the one furthest
    into training that loads whole, of any kind (last, step, interrupted, epoch); damaged ones
    are skipped with a warning naming them."""
    ranked, damaged = [], []
    for path in run.checkpoints.glob("*.ckpt"):
        try:
            step = load_checkpoint(path, mmap=True).get("global_step", 0)
        except CheckpointError as err:
            damaged.append(f"{path.name} ({err})")
            continue
        ranked.append((checkpoint_rank(path, step), path))
    if damaged:
        log.warning(f"resume=auto: skipping damaged checkpoints: {'; '.join(damaged)}")
    if not ranked and damaged:
        raise CheckpointError(f"resume=auto: every checkpoint in {run.checkpoints} is damaged, "
                              "so there is nothing to continue from: start a new run with "
                              "another hydra.run.dir")
    return max(ranked)[1] if ranked else None


def resume_from(run: RunDir, ckpt_path: str | None, resume: str | None,
                run_dir_named: bool) -> str | None:
    """The checkpoint trainer.fit continues from: `ckpt_path`; for resume=auto the newest intact
    checkpoint of the run directory (chosen here so the file is checked before the directory
    is touched); None for a fresh start."""
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be null or auto, got {resume!r}")
    if resume == "auto":
        if ckpt_path:
            raise ValueError("give either ckpt_path=<checkpoint> or resume=auto, not both")
        newest = newest_intact_checkpoint(run)
        if newest is None:
            where = "" if run_dir_named else (
                " (a new directory: resume=auto continues a run only when hydra.run.dir names "
                "its directory)")
            log.info(f"resume=auto: no checkpoint in {run.checkpoints}{where}; starting a new "
                     "run there")
            return None
        log.info(f"resume=auto: continuing from {newest}")
        return str(newest)
    if ckpt_path:  # an unsafe or damaged file is refused before anything
        load_checkpoint(checkpoint_file(ckpt_path), mmap=True)
    refuse_other_runs(run, ckpt_path)
    return ckpt_path


def refuse_other_runs(run: RunDir, ckpt_path: str | None) -> None:
    """A run directory that holds checkpoints is trained into only to continue that run."""
    if not run.has_checkpoints():
        return
    if ckpt_path and Path(ckpt_path).expanduser().resolve().parent == run.checkpoints.resolve():
        return
    raise FileExistsError(f"{run.checkpoints} already holds checkpoints of an earlier run: "
                          f"choose a new {continue_hint(run.path, new=True)}, or continue that "
                          f"run with the same command plus {continue_hint(run.path)}")


#: data settings that say where the data is and how it is read, not what it is: a continued run
#: may change them (the data moved, another cache folder, more decoding threads)
DATA_LOCATION_KEYS = ("cache", "decode_workers", "download", "on_device", "eval_batch_size",
                      "skip_bad_files", "num_workers")


def config_differences(stored, current, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (stored value, current value)} of two resolved config trees."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = {}
        for key in sorted(set(stored) | set(current), key=str):
            found.update(config_differences(stored.get(key), current.get(key),
                                            f"{prefix}{key}."))
        return found
    return {} if stored == current else {prefix.rstrip("."): (stored, current)}


def describe(differences: dict[str, tuple]) -> str:
    return ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in differences.items())


def check_continuation(ckpt_path: str | None, cfg: DictConfig, model: L.LightningModule) -> None:
    """Before anything is written: a run continued from `ckpt_path` keeps the checkpoint's seed
    and data (its random states and data position are restored with it), and its weights must
    fit the configured model. Errors name the config keys that differ from the checkpoint's."""
    from vaelab.run_dir import task_config

    if not ckpt_path:
        return
    ckpt = load_checkpoint(ckpt_path, mmap=True)
    stored = ckpt.get("run_config") or {}
    current = OmegaConf.to_container(task_config(cfg), resolve=True)
    fixed = {key: pair for key, pair in config_differences(
        {k: stored.get(k) for k in ("seed", "data")},
        {k: current.get(k) for k in ("seed", "data")}).items()
        if stored and not is_location(key)}
    if fixed:
        raise ValueError(
            f"{ckpt_path} continues a run trained with other settings: {describe(fixed)}. A run "
            "continued from a checkpoint keeps its seed and data (their random states and data "
            "position are restored with it): drop these overrides, or train a new run without "
            "ckpt_path/resume to change them")
    changed = config_differences(stored.get("model"), current.get("model"), "model.") \
        if stored else {}
    mismatched = weight_mismatches(ckpt["state_dict"], model.state_dict())
    if mismatched:
        named = describe({k: v for k, v in changed.items()
                          if not k.startswith("model.optimizer.")}) or \
            f"the weights {', '.join(mismatched[:5])}"
        raise ValueError(f"{ckpt_path} does not fit the configured model: it was trained with "
                         f"other model settings, {named}. Continue it with its own model "
                         "settings, or train a new run without ckpt_path/resume")
    others = {k: v for k, v in changed.items() if not k.startswith("model.optimizer.")}
    if others:
        log.info(f"continuing {ckpt_path} with model settings that differ from the "
                 f"checkpoint's: {describe(others)}")


def is_location(key: str) -> bool:
    """Whether a data config key names where the data is or how it is read (DATA_LOCATION_KEYS,
    and every *_dir)."""
    name = key.rsplit(".", 1)[-1]
    return key.startswith("data.") and (name.endswith("_dir") or name in DATA_LOCATION_KEYS)


def weight_mismatches(stored: dict, current: dict) -> list[str]:
    """Names of the tensors that are missing on either side or differ in shape."""
    names = sorted(set(stored) | set(current))
    return [n for n in names if n not in stored or n not in current
            or tuple(stored[n].shape) != tuple(current[n].shape)]


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint by the monitored metric (first monitoring ModelCheckpoint), found in
    its own checkpoints folder (the run may have moved since it was written)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
            recorded = Path(callback.best_model_path)
            in_run = Path(callback.dirpath or recorded.parent) / recorded.name
            for path in (in_run, recorded):
                if path.is_file():
                    return str(path)
            log.warning(f"the best checkpoint {recorded} no longer exists (nor {in_run})")
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


def load_run(ckpt_path: str | Path, data_dir: str | None = None, trust_config: bool = False):
    """(the training run's config, its model with the checkpoint's weights in eval mode, its
    DataModule). The stored config is checked before anything is built (vaelab.trust) unless
    `trust_config`. The data folder: `data_dir` when given, else the run's own while it
    exists, else $VAELAB_DATA_DIR."""
    ckpt = load_checkpoint(ckpt_path)
    if "run_config" not in ckpt:
        raise CheckpointError(f"{ckpt_path} has no run_config: it was not written by vaelab-train")
    stored = ckpt["run_config"]
    if not trust_config:
        check_stored_config(stored, ("model", "data"), source=str(ckpt_path))
    run_cfg = upgrade_run_config(OmegaConf.create(stored))
    folder = data_folder(run_cfg.data.get("data_dir"), data_dir)
    if folder is not None:
        with open_dict(run_cfg):
            run_cfg.data.data_dir = folder
    model = build(run_cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return run_cfg, model, build(run_cfg.data)


def data_folder(trained_from: str | None, given: str | None) -> str | None:
    """Where a rebuilt run reads its data: `given` (data_dir=...), else the folder it was
    trained from while that exists, else $VAELAB_DATA_DIR; None keeps the run's setting."""
    if trained_from is None:
        return None  # data without a folder (digits, rendered sprites)
    if given:
        return given
    if Path(trained_from).expanduser().exists():
        return None
    return os.environ.get("VAELAB_DATA_DIR") or None


def load_command_run(cfg: DictConfig, command: str):
    """The trained run a command works on (vaelab-eval, -viz, -attr): its required options
    checked, then `load_run` of cfg.ckpt_path with the command's data_dir and trust options."""
    check_required(cfg, command)
    with interrupts.during(f"loading {cfg.ckpt_path}"):
        return load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"),
                        trust_config=cfg.get("trust_checkpoint_config", False))


@contextmanager
def command_attempt(cfg: DictConfig, datamodule, stage: str | None = None
                    ) -> Iterator[Attempt]:
    """The attempt of a command on a trained run in a new folder, cfg.paths.output_dir
    (run_dir.Attempt: locked, never written over), with the run's data set up in it."""
    with Attempt(RunDir(cfg.paths.output_dir), cfg, fresh_only=True) as attempt:
        with interrupts.during("loading the data"):
            setup_run_data(datamodule, stage)
        yield attempt


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
