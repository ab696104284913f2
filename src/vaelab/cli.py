"""The console commands. Only Hydra is imported here: `--help` and `--cfg job` answer without
loading torch or Lightning, which each command imports once a run really starts. An error is
one line on the console (its traceback goes to the log file), and a failed multirun job does
not stop the sweep.

A DDP rank that Lightning launched (it re-runs the command line) runs its parent job's config
instead of composing a new run directory (vaelab.distributed), and reports an error in one line
too. SIGTERM and SIGINT stop every command from its first moment (vaelab.interrupts).
"""

import gc
import sys
from collections.abc import Callable
from importlib import import_module
from typing import TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vaelab import interrupts
from vaelab.configs import CONFIG_DIR
from vaelab.console import configure_console, report_error
from vaelab.distributed import is_launched_rank, launched_rank_config
from vaelab.interrupts import Interrupted
from vaelab.run_dir import remove_if_empty
from vaelab.validation import check_required

T = TypeVar("T")


class JobFailed(RuntimeError):
    """A multirun job's error, re-raised without its long traceback (failed.json has it)."""


def run_task(task: Callable[[], T]) -> T:
    """Run a Hydra task function: a single run that fails prints the error's message and exits
    with status 1; in a multirun the error goes back to Hydra, which runs the other jobs. A
    signal stops the process (status 128 + its number). The run folder Hydra made is removed
    when the command left nothing in it."""
    try:
        with interrupts.handled():
            return task()
    except (Exception, Interrupted) as error:
        configure_console()
        report_error(error)
        if HydraConfig.initialized():
            remove_if_empty(HydraConfig.get().runtime.output_dir)
        if isinstance(error, Interrupted):
            raise
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise JobFailed(f"{type(error).__name__}: {error}") from None
        sys.exit(1)
    finally:
        # A finished job's trainer, model and data sit in reference cycles that Python frees
        # only at some later full collection: without this, a sequential multirun's memory
        # grows by a job's worth per job (400 MB per sprites job, measured).
        gc.collect()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    from vaelab.train import optimized_metric, train

    return run_task(lambda: optimized_metric(cfg, train(cfg)))


def run_checked(cfg: DictConfig, command: str, load: Callable[[], Callable]) -> None:
    """run_task of the function `load()` returns, once the command's required options are
    checked: a missing one answers at once, before torch and Lightning load."""
    def task():
        check_required(cfg, command)
        return load()(cfg)

    run_task(task)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _eval(cfg: DictConfig) -> None:
    run_checked(cfg, "eval", lambda: import_module("vaelab.eval").evaluate)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="viz")
def _viz(cfg: DictConfig) -> None:
    run_checked(cfg, "viz", lambda: import_module("vaelab.visualize").visualize)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="attr")
def _attr(cfg: DictConfig) -> None:
    run_checked(cfg, "attr", lambda: import_module("vaelab.attr").attribute_vector_figure)


def command(main: Callable[[], None]) -> None:
    """Run a console command with vaelab's signal handling from its first moment (Hydra's
    config composition included): a signal exits with 128 + its number and one line."""
    with interrupts.handled():
        try:
            main()
        except Interrupted as error:
            configure_console()
            report_error(error)
            raise


def launched_rank(task: Callable[[DictConfig], object]) -> None:
    """A DDP rank that Lightning launched runs its parent's job config; an error is one line
    (its rank's), as in the parent."""
    run_task(lambda: task(launched_rank_config()))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="explore")
def explore(cfg: DictConfig) -> None:
    from vaelab.explore.command import explore as serve

    run_task(lambda: serve(cfg))


def train() -> None:
    """vaelab-train."""
    if is_launched_rank():
        from vaelab.train import train as train_run

        command(lambda: launched_rank(train_run))
    else:
        command(_train)


def evaluate() -> None:
    """vaelab-eval."""
    if is_launched_rank():
        from vaelab.eval import evaluate as evaluate_run

        command(lambda: launched_rank(evaluate_run))
    else:
        command(_eval)


def viz() -> None:
    """vaelab-viz."""
    command(_viz)


def attr() -> None:
    """vaelab-attr."""
    command(_attr)


def report(argv: list[str] | None = None) -> None:
    """vaelab-report."""
    from vaelab.report import main

    command(lambda: main(argv))
