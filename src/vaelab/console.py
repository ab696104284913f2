"""The console: one logger for every entry point, quiet on ranks other than 0, and mirrored into
the run's log file (`<run>/<task_name>.log`) with full tracebacks.

Lightning's messages and Python warnings are routed through the same handlers, so the log file
holds what the console showed. Until a run directory may be written (see run_dir.Attempt), the
file's records wait in memory.
"""

import io
import logging
import os
import re
import shutil
import sys
import warnings
from logging.handlers import MemoryHandler
from pathlib import Path

log = logging.getLogger("vaelab")

#: environment variables that carry a process's global rank (as Lightning reads them)
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
#: Lightning lines that describe its own defaults or advertise other products: noise for users
_QUIET = (
    r".*(GPU|TPU|HPU) available.*",
    r".*LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES.*",
    r"💡 Tip:.*",
    r".*litlogger.*",
    r".*already configured with model summary.*",
    r"`weights_only` was not set, defaulting to `False`.*",  # on saving: the full state, as meant
    r".*Received SIGTERM: \d+",  # vaelab says which signal arrived and what it does
)


#: warnings about Lightning's internals or defaults vaelab sets on purpose; never the user's doing
_QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*\.fit\(ckpt_path=None\)` was called without a model.*",  # OnExceptionCheckpoint's default
    r".*ckpt_path=\"last\"\) is set, but there is no last checkpoint.*",  # vaelab says so itself
    r".*It is recommended to use `self\.log\(.*sync_dist=True`.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*Checkpoint directory .* exists and is not empty.*",  # resume=auto continues it
    # ckpt_path= continues a run into a new directory, as documented: the best-checkpoint
    # record of the old one rightly stays behind
    r".*The dirpath has changed from .* therefore `best_model_score`.*",
    # vaelab logs epoch means at the end of each epoch, whatever log_every_n_steps says
    r".*is smaller than the logging interval Trainer\(log_every_n_steps.*",
)


def global_rank() -> int:
    """This process's rank in a distributed job (0 when there is none)."""
    for name in _RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message`, with the level for warnings and errors and the rank off rank 0."""

    def __init__(self, rank: int):
        super().__init__(datefmt="%H:%M:%S")
        self.prefix = f"[rank {rank}] " if rank else ""

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        message = record.getMessage()
        if record.name == "py.warnings":  # "file:line: Category: text\n  source line"
            message = message.strip().splitlines()[0]
        return f"{self.formatTime(record, self.datefmt)} {self.prefix}{level}{message}"


class _DropNoise(logging.Filter):
    def __init__(self):
        super().__init__()
        self.patterns = [re.compile(p) for p in _QUIET]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


class _ConsoleHandler(logging.StreamHandler):
    """The run's lines (info, warnings, progress) on stdout, with Lightning's model summary and
    the final metrics table, so `vaelab-train > run.out` captures the run; errors on stderr, so
    they reach the terminal when stdout is redirected. An error shows its message; its traceback
    goes to the log file only, as do records logged with extra={"file_only": True} (e.g. what a
    progress bar already shows)."""

    def __init__(self):
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "file_only", False):
            return
        if record.exc_info or record.exc_text:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        # looked up per record: sys.stdout may have been replaced since (pytest's capture)
        self.stream = sys.stderr if record.levelno >= logging.ERROR else sys.stdout
        super().emit(record)


_console: logging.Handler | None = None
_file: MemoryHandler | None = None


def configure_console(level: int = logging.INFO) -> None:
    """Route vaelab's, Lightning's and Python's warnings through one console handler (stdout,
    errors on stderr; warnings only on ranks other than 0). Idempotent: a multirun's jobs call
    it each."""
    global _console
    rank = global_rank()
    root = logging.getLogger()
    if _console is not None:  # an earlier job's
        root.removeHandler(_console)
    for handler in list(root.handlers):  # Hydra's own console handler: ours replaces it
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
            root.removeHandler(handler)
    _console = _ConsoleHandler()
    _console.setFormatter(ConsoleFormatter(rank))
    _console.setLevel(level if rank == 0 else logging.WARNING)
    _console.addFilter(_DropNoise())
    root.addHandler(_console)
    root.setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    # Lightning prints through a handler of its own unless told to propagate.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lightning_log = logging.getLogger(name)
        for handler in list(lightning_log.handlers):
            lightning_log.removeHandler(handler)
        lightning_log.propagate = True
    logging.captureWarnings(True)
    # database migrations of MLflow's and Optuna's stores: not the user's business
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def buffer_log_file() -> None:
    """Keep the records that the log file will get in memory until `open_log_file`."""
    global _file
    close_log_file()
    if global_rank() != 0:
        return
    _file = MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    _file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _file.addFilter(_DropNoise())
    logging.getLogger().addHandler(_file)


def open_log_file(path: Path) -> None:
    """Write the buffered records, and every later one, to `path` (appended)."""
    if _file is None or _file.target is not None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace: a file name that is not UTF-8 (undecodable bytes) is logged, escaped
    target = logging.FileHandler(path, mode="a", encoding="utf-8", errors="backslashreplace")
    target.setFormatter(_file.formatter)
    _file.setTarget(target)
    _file.flushLevel = logging.DEBUG  # from now on, straight through
    _file.flush()


def close_log_file() -> None:
    """Flush and detach the log file; records still buffered (no file opened) are dropped."""
    global _file
    if _file is None:
        return
    logging.getLogger().removeHandler(_file)
    if _file.target is not None:
        _file.flush()
        _file.target.close()
    else:
        _file.buffer.clear()
    _file.close()
    _file = None


def report_error(error: BaseException) -> None:
    """Log an error once: its message on the console, with its traceback in the log file."""
    if getattr(error, "_vaelab_reported", False):
        return
    log.error(f"{type(error).__name__}: {error}",
              exc_info=(type(error), error, error.__traceback__))
    try:
        error._vaelab_reported = True
    except AttributeError:  # some built-in exceptions take no attributes
        pass


def metrics_table(metrics: dict, descriptions: dict[str, str], title: str) -> str:
    """`title`, then the `metrics` that `descriptions` names, in its order, as a text table
    (metric, value, meaning): what vaelab-train and vaelab-eval print at their end."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table, box

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("metric", "value", "meaning"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, meaning in descriptions.items():
        if name in metrics:
            value = metrics[name]
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            table.add_row(name, shown, escape(meaning))
    # as wide as the terminal (or 120 columns in a file), so that meanings stay on one line
    width = shutil.get_terminal_size((120, 24)).columns
    Console(file=(text := io.StringIO()), width=width, color_system=None).print(table)
    rows = "\n".join(line.rstrip() for line in text.getvalue().splitlines()).strip("\n")
    return f"{title}\n{rows}"
