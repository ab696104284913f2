"""CPU threads: a run on a busy machine says when torch's threads oversubscribe the cores.

Torch starts one intra-op thread per core. When other processes already keep cores busy, those
threads wait on each other, and small models train several times slower (measured on a shared
2-core machine: epochs of 6-7 s took 28-83 s). vaelab does not change the thread count itself:
results are reproducible for a given thread count, and only the user knows whether the other
load will last.
"""

import os

import torch

from vaelab.console import global_rank, log


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def oversubscription(threads: int, cores: int, load: float) -> str | None:
    """A one-line warning when `threads` torch threads plus the other processes' load (the
    1-minute load average less about one for this process) need more than `cores`, and fewer
    threads would fit."""
    others = max(0.0, load - 1.0)
    fit = max(1, int(cores - others))
    if threads + others <= cores + 0.5 or fit >= threads:
        return None
    return (f"torch uses {threads} threads on {cores} CPU cores while other processes keep "
            f"about {others:.1f} of them busy (load average {load:.1f}): oversubscribed cores "
            f"can make training several times slower. Start the run with OMP_NUM_THREADS={fit}")


def warn_if_oversubscribed() -> None:
    """Log `oversubscription` for this process (rank 0 only), once at a run's start."""
    if global_rank() != 0 or not hasattr(os, "getloadavg"):
        return
    message = oversubscription(torch.get_num_threads(), available_cores(), os.getloadavg()[0])
    if message:
        log.warning(message)
