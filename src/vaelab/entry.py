"""What every command does around its work: errors as one line on the console (the traceback
goes to the log file), and a failed multirun job that does not stop the sweep."""

import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from vaelab.console import configure_console, report_error

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
