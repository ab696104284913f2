"""DDP under Hydra: the ranks Lightning launches as subprocesses run their parent's job config.

Lightning's subprocess launcher starts ranks 1..N-1 by re-running the command line. Under Hydra
that command would compose a new run directory (or, in a multirun, launch the whole sweep again).
Instead the parent publishes its resolved config file in an environment variable and the child
ranks train from that file, so each job keeps exactly one output directory.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

JOB_CONFIG_ENV = "VAELAB_DDP_JOB_CONFIG"
# What Lightning's launcher and DDP setup write into the parent's environment. Left behind,
# LOCAL_RANK would make the next job of a multirun believe its ranks were already launched.
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE",
            "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS", JOB_CONFIG_ENV)


def is_launched_rank() -> bool:
    """True in a rank that Lightning's subprocess launcher started for a vaelab job."""
    # Lightning sets LOCAL_RANK only in the processes it launches (and cluster launchers do too,
    # but they never see JOB_CONFIG_ENV, which only a vaelab parent process sets).
    return JOB_CONFIG_ENV in os.environ and "LOCAL_RANK" in os.environ


def launched_rank_config() -> DictConfig:
    """The resolved config of the job that launched this rank."""
    return OmegaConf.load(os.environ[JOB_CONFIG_ENV])


@contextmanager
def share_job_config(run_config: dict) -> Iterator[None]:
    """Ranks launched inside this block train from `run_config` (a resolved config), through a
    temporary file: the run directory may not be written before training starts. Afterwards
    the process group and the environment Lightning set up are undone, so the next job of a
    multirun (same process) launches its own ranks on a fresh port."""
    import torch.distributed as dist

    saved = {key: os.environ.get(key) for key in _DDP_ENV}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="vaelab-job-",
                                     delete=False) as f:
        f.write(OmegaConf.to_yaml(run_config))
    os.environ[JOB_CONFIG_ENV] = f.name
    try:
        yield
    finally:
        Path(f.name).unlink(missing_ok=True)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
