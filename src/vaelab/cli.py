"""The console commands. Only Hydra is imported here: `--help` and `--cfg job` answer without
loading torch or Lightning, which each command imports once a run really starts. An error is
one line on the console (its traceback goes to the log file), and a failed multirun job does
not stop the sweep.

A DDP rank that Lightning launched (it re-runs the command line) runs its parent job's config
instead of composing a new run directory (vaelab.distributed).
"""

import gc
import sys
from collections.abc import Callable
from typing import TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vaelab.configs import CONFIG_DIR
from vaelab.console import configure_console, report_error
from vaelab.distributed import is_launched_rank, launched_rank_config

T = TypeVar("T")


class JobFailed(RuntimeError):
    """A multirun job's error, re-raised without its long traceback (failed.json has it)."""


def run_task(task: Callable[[], T]) -> T:
    """Run a Hydra task function: a single run that fails prints the error's message and exits
    with status 1; in a multirun the error goes back to Hydra, which runs the other jobs."""
    try:
        return task()
    except Exception as error:
        configure_console()
        report_error(error)
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _eval(cfg: DictConfig) -> None:
    from vaelab.eval import evaluate

    run_task(lambda: evaluate(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="viz")
def viz(cfg: DictConfig) -> None:
    from vaelab.visualize import visualize

    run_task(lambda: visualize(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="attr")
def attr(cfg: DictConfig) -> None:
    from vaelab.attr import attribute_vector_figure

    run_task(lambda: attribute_vector_figure(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="explore")
def explore(cfg: DictConfig) -> None:
    from vaelab.explore.command import explore as serve

    run_task(lambda: serve(cfg))


def train() -> None:
    """vaelab-train."""
    if is_launched_rank():
        from vaelab.train import train as train_run

        train_run(launched_rank_config())
    else:
        _train()


def evaluate() -> None:
    """vaelab-eval."""
    if is_launched_rank():
        from vaelab.eval import evaluate as evaluate_run

        evaluate_run(launched_rank_config())
    else:
        _eval()


def report(argv: list[str] | None = None) -> None:
    """vaelab-report."""
    from vaelab.report import main

    main(argv)
