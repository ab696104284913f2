"""A run's directory: the names of the files a run writes, and the lock that keeps it to one run.

    <run>/config_resolved.yaml   the resolved config of the latest attempt
         /metrics.json           final metrics (written last: its presence means "completed")
         /failed.json            the error of a failed or interrupted attempt
         /checkpoints/           last.ckpt, the best epoch_*.ckpt, interrupted.ckpt
         /figures/<name>/        latent-space figures as PNG files
         /eval/<date_time>/      one folder per vaelab-eval
         /<task_name>.log        the console log
         /.hydra/                the config as Hydra composed it, the overrides
"""

import fcntl
import json
import os
import socket
import traceback
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vaelab import console

CONFIG = "config_resolved.yaml"
METRICS = "metrics.json"
FAILED = "failed.json"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
EVAL = "eval"
HYDRA = ".hydra"
LOCK = ".lock"
#: written by Lightning's OnExceptionCheckpoint when an attempt stops on an exception (SIGTERM)
INTERRUPTED = "interrupted"
#: the files an attempt writes once; continuing a run in place keeps the earlier copies
ATTEMPT_FILES = (CONFIG, METRICS, FAILED)


class RunDirLocked(RuntimeError):
    """Another live process is using this run directory."""


class RunDir:
    """The paths inside one run directory (nothing is created until a method writes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def failed(self) -> Path:
        return self.path / FAILED

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    @property
    def hydra(self) -> Path:
        return self.path / HYDRA

    def figure(self, name: str, stem: str) -> Path:
        return self.figures / name / f"{stem}.png"

    def log(self, task_name: str) -> Path:
        return self.path / f"{task_name}.log"

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.ckpt"))

    def has_results(self) -> bool:
        """True when an earlier attempt left checkpoints or final metrics here."""
        return self.has_checkpoints() or self.metrics.exists()

    def keep_earlier_attempt(self) -> list[Path]:
        """Rename the previous attempt's files (metrics.json -> metrics.attempt1.json, ...) so
        that continuing a run in place never overwrites them; returns the new names."""
        kept = []
        for name in ATTEMPT_FILES:
            path = self.path / name
            if not path.exists():
                continue
            attempt = 1
            while (target := path.with_name(f"{path.stem}.attempt{attempt}{path.suffix}")).exists():
                attempt += 1
            path.rename(target)
            kept.append(target)
        return kept


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run a checkpoint belongs to: <run> for <run>/checkpoints/<name>.ckpt, else its folder."""
    folder = Path(ckpt_path).expanduser().absolute().parent
    return folder.parent if folder.name == CHECKPOINTS else folder


class RunLock:
    """An exclusive lock on a run directory, held while a run uses it.

    fcntl.flock is released by the kernel when its holder dies (even by SIGKILL), so a killed
    run never leaves a stale lock behind; the file records the holder for the error message.
    """

    def __init__(self, run_dir: RunDir):
        self.path = run_dir.path / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirLocked(
                f"{self.path.parent} is in use by {holder}: two runs in one directory would mix "
                "their checkpoints and metrics. Wait for it to finish (or stop it), or choose "
                "another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def write_json(path: Path, record: dict) -> None:
    """Write `record` as JSON through a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def failure_record(error: BaseException, checkpoint: Path | None = None) -> dict:
    """What failed.json holds: the error, its traceback, and for an interrupted run (SIGTERM)
    where its checkpoint is."""
    record = {
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interrupted": isinstance(error, SystemExit),
    }
    if checkpoint is not None:
        record["checkpoint"] = str(checkpoint)
    return record


def task_config(cfg: DictConfig) -> DictConfig:
    """The run's own config: `cfg` without Hydra's node (compose_config keeps it)."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def write_config_files(run: RunDir, cfg: DictConfig) -> None:
    """config_resolved.yaml, and .hydra/{config,hydra,overrides}.yaml as Hydra writes them
    (vaelab sets hydra.output_subdir=null, so that nothing is written before the checks pass)."""
    task_cfg = task_config(cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    run.config.write_text(OmegaConf.to_yaml(task_cfg, resolve=True))
    run.hydra.mkdir(exist_ok=True)
    OmegaConf.save(task_cfg, run.hydra / "config.yaml")
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        OmegaConf.save({"hydra": hydra_cfg}, run.hydra / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(list(hydra_cfg.overrides.task)),
                       run.hydra / "overrides.yaml")


class Attempt:
    """One attempt at a run in its directory (rank 0 only does any of this).

    Entering locks the directory. A fresh directory is written to at once; one that holds an
    earlier attempt's results is left untouched until `start()` (called when training really
    starts: data loaded, checkpoint restored), which moves the earlier files aside. An attempt
    that fails after starting (or in a fresh directory) leaves failed.json.
    """

    def __init__(self, run: RunDir, cfg: DictConfig):
        self.run, self.cfg = run, cfg
        self.rank_zero = console.global_rank() == 0
        self.lock = RunLock(run)
        self.started = False
        #: set by the caller when the attempt stops on SIGTERM: where its checkpoint is
        self.interrupt_checkpoint: Path | None = None

    def __enter__(self) -> "Attempt":
        if self.rank_zero:
            self.lock.acquire()
            console.buffer_log_file()
            try:
                if not self.run.has_results():
                    self.start()
            except BaseException as error:
                self.__exit__(type(error), error, error.__traceback__)
                raise
        return self

    def start(self) -> None:
        """Take the directory: earlier attempt's files aside, the config and log written."""
        if self.started or not self.rank_zero:
            return
        self.started = True
        kept = self.run.keep_earlier_attempt()
        write_config_files(self.run, self.cfg)
        console.open_log_file(self.run.log(self.cfg.task_name))
        if kept:
            console.log.info("kept the earlier attempt's files as "
                             + ", ".join(p.name for p in kept))

    def finish(self, metrics: dict) -> None:
        """Write metrics.json (after moving an earlier attempt's aside, if still needed)."""
        if self.rank_zero:
            self.start()
            write_json(self.run.metrics, metrics)

    def __exit__(self, exc_type, error, tb) -> None:
        try:
            if self.rank_zero and error is not None and not isinstance(error, RunDirLocked):
                if self.started or not self.run.has_results():
                    self.start()
                    write_json(self.run.failed,
                               failure_record(error, self.interrupt_checkpoint))
            if error is not None and type(error) is not SystemExit:
                console.report_error(error)
        finally:
            console.close_log_file()
            if self.rank_zero:
                self.lock.release()
