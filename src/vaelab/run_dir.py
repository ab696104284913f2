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
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vaelab import console
from vaelab.atomic import atomic_path

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


class RunDirLocked(RuntimeError):
    """Another live process is using this run directory."""


class RunDirRefused(FileExistsError):
    """The directory holds another command's results, which are never written over."""


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

    def contents(self) -> list[str]:
        """The names in the directory but the lock (none when it does not exist)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK)

    def set_aside(self, *names: str) -> list[Path]:
        """Rename an earlier attempt's files (metrics.json -> metrics.attempt1.json, ...) so
        that continuing a run in place never overwrites them; returns the new names."""
        kept = []
        for name in names:
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PermissionError(
                err.errno, f"cannot write the run directory {self.path.parent} "
                f"({err.strerror}): choose a writable one with hydra.run.dir=<folder>") from None
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

    def release(self, remove: bool = False) -> None:
        """Release the lock; `remove` deletes its file too (a directory this process made and
        leaves without results)."""
        if self._fd is not None:
            if remove:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_if_empty(path: str | Path) -> None:
    """Delete a run folder that holds nothing: Hydra makes it before the command runs, and a
    command refused before writing anything leaves no folder behind."""
    with suppress(OSError):
        Path(path).rmdir()  # fails unless the folder is empty


def write_json(path: Path, record: dict) -> None:
    """Write `record` as JSON through a temporary file, so a reader never sees half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))


def failure_record(error: BaseException, checkpoint: Path | None = None,
                   started: bool = True) -> dict:
    """What failed.json holds: the error, its traceback, whether the attempt had started (data
    loaded, checkpoint restored), which multirun job it was, and for an interrupted run (SIGTERM)
    where its checkpoint is."""
    from hydra.core.hydra_config import HydraConfig

    record = {
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interrupted": isinstance(error, SystemExit),
        "started": started,
    }
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        record["overrides"] = list(hydra_cfg.overrides.task)
        if hydra_cfg.job.get("num") is not None:
            record["job_num"] = hydra_cfg.job.num
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
    """One attempt of a command (vaelab-train, -eval, -viz, -attr) in its run directory; rank 0
    only does any of this.

    Entering locks the directory, and writes nothing else: the attempt `start()`s once its
    checks have passed and its inputs are loaded (training: data loaded, checkpoint restored),
    and only then writes its config files and log (an earlier attempt's config_resolved.yaml
    and failed.json moved aside). `finish()` writes metrics.json (an earlier one moved aside).
    An attempt that fails after starting leaves failed.json; one that fails before leaves a
    finished run exactly as it was, and a new directory holding failed.json alone (the one
    small record that vaelab-report and the user need). With `fresh_only`, a directory that
    holds anything is refused: eval, viz and attr never write into an earlier result.
    """

    def __init__(self, run: RunDir, cfg: DictConfig, fresh_only: bool = False):
        self.run, self.cfg, self.fresh_only = run, cfg, fresh_only
        self.rank_zero = console.global_rank() == 0
        self.lock = RunLock(run)
        self.started = False
        #: the directory held nothing (but a record of an attempt that never started)
        self._fresh = False
        #: set by the caller when the attempt stops on SIGTERM: where its checkpoint is
        self.interrupt_checkpoint: Path | None = None

    def __enter__(self) -> "Attempt":
        if self.rank_zero:
            # an earlier attempt that never started left failed.json alone: no result of its own
            earlier = [name for name in self.run.contents() if name != FAILED]
            if earlier and self.fresh_only:
                raise RunDirRefused(
                    f"{self.run.path} holds the files of an earlier command "
                    f"({', '.join(earlier[:5])}): they are never written over. Choose a new "
                    "hydra.run.dir (the default is always new)")
            self._fresh = not earlier
            self.lock.acquire()
            console.buffer_log_file()
        return self

    def start(self) -> None:
        """Take the directory: earlier attempt's config and failure aside, config and log
        written."""
        if self.started or not self.rank_zero:
            return
        self.started = True
        kept = self.run.set_aside(CONFIG, FAILED)
        write_config_files(self.run, self.cfg)
        console.open_log_file(self.run.log(self.cfg.task_name))
        if kept:
            console.log.info("kept the earlier attempt's files as "
                             + ", ".join(p.name for p in kept))

    def finish(self, metrics: dict) -> None:
        """Write metrics.json (an earlier attempt's kept as metrics.attempt<N>.json)."""
        if self.rank_zero:
            self.start()
            self.run.set_aside(METRICS)
            write_json(self.run.metrics, metrics)

    def __exit__(self, exc_type, error, tb) -> None:
        try:
            if self.rank_zero and error is not None:
                self._record(error)
            if error is not None and type(error) is not SystemExit:
                console.report_error(error)
        finally:
            console.close_log_file()
            if self.rank_zero:
                self.lock.release(remove=self._fresh and not self.started)

    def _record(self, error: BaseException) -> None:
        """failed.json for an attempt that started, or that failed in a new directory."""
        if self.started or self._fresh:
            write_json(self.run.failed,
                       failure_record(error, self.interrupt_checkpoint, self.started))


def multirun() -> bool:
    """Whether this process runs a Hydra multirun's jobs."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def continue_hint(run_dir: str | Path, new: bool = False) -> str:
    """The overrides that continue this run: `hydra.run.dir=<run> resume=auto`, or for a
    multirun job `hydra.sweep.dir=<sweep> resume=auto` (each job continues in its own folder);
    new=True: the option that chooses another directory."""
    if new:
        return "hydra.sweep.dir" if multirun() else "hydra.run.dir"
    if multirun():
        return f"hydra.sweep.dir={HydraConfig.get().sweep.dir} resume=auto"
    return f"hydra.run.dir={run_dir} resume=auto"
