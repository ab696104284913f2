"""Multirun job folders: what each job ran, how it ended (completed, failed, incomplete), and
the failure record a job leaves so that a sweep reports it instead of losing it."""

import json
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

FAILED_FILE = "failed.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config_resolved.yaml"


def record_failure(output_dir: Path, error: BaseException) -> None:
    """Write <output_dir>/failed.json with the error's type, message and traceback."""
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (output_dir / FAILED_FILE).write_text(json.dumps(record, indent=2))


class RecordFailure(Callback):
    """Hydra callback: a job that raised leaves failed.json in its folder. Hydra's launchers run
    the sweep's other jobs anyway (the basic sweeper re-raises the first failure at the end)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs) -> None:
        error = job_return._return_value
        # FileExistsError: the folder holds an earlier run, which must stay as it was.
        if job_return.status == JobStatus.FAILED and not isinstance(error, FileExistsError):
            record_failure(Path(config.hydra.runtime.output_dir), error)


@dataclass
class Job:
    """One multirun job folder."""

    path: Path
    num: int
    #: completed (metrics.json), failed (failed.json), or incomplete (still running, or killed)
    status: str
    #: the job's command-line overrides, e.g. ["model.beta=4"]
    overrides: list[str]
    #: the resolved run config (empty until the job has written it)
    config: DictConfig
    metrics: dict = field(default_factory=dict)
    error: str | None = None

    def select(self, key: str, default=None):
        """A config value by dotted key, or `default` if absent or not resolvable."""
        try:
            value = OmegaConf.select(self.config, key, default=default)
            return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) \
                else value
        except OmegaConfBaseException:
            return default

    def override_values(self) -> dict[str, str]:
        """{key: value} of the overrides, e.g. {"model.beta": "4"}."""
        pairs = (o.split("=", 1) for o in self.overrides if "=" in o)
        return {k.lstrip("+~"): v for k, v in pairs}


def _load_yaml(path: Path):
    return OmegaConf.load(path) if path.is_file() else None


def read_job(path: Path) -> Job:
    """The state of the job folder `path` (one Hydra wrote: it has .hydra/)."""
    hydra_cfg = _load_yaml(path / ".hydra" / "hydra.yaml")
    num = OmegaConf.select(hydra_cfg, "hydra.job.num", default=None) if hydra_cfg else None
    overrides = _load_yaml(path / ".hydra" / "overrides.yaml")
    config = _load_yaml(path / CONFIG_FILE) or _load_yaml(path / ".hydra" / "config.yaml")
    job = Job(path=path, num=num if num is not None else -1, status="incomplete",
              overrides=list(overrides or []), config=config or OmegaConf.create())
    failed, metrics = path / FAILED_FILE, path / METRICS_FILE
    # A job resumed after a failure (resume=auto) has both files: the newer one tells its state.
    if failed.is_file() and not (metrics.is_file()
                                 and metrics.stat().st_mtime > failed.stat().st_mtime):
        failure = json.loads(failed.read_text())
        job.status, job.error = "failed", f"{failure['error_type']}: {failure['message']}"
    elif metrics.is_file():
        job.status, job.metrics = "completed", json.loads(metrics.read_text())
    return job


def collect_jobs(multirun_dir: Path) -> list[Job]:
    """Every job folder under `multirun_dir`, in launch order."""
    multirun_dir = Path(multirun_dir)
    if not multirun_dir.is_dir():
        raise FileNotFoundError(
            f"{multirun_dir} is not a folder: pass a multirun folder such as "
            "outputs/train/multiruns/<date_time> (vaelab-train -m ... prints it)"
        )
    jobs = [read_job(d.parent) for d in multirun_dir.rglob(".hydra") if d.is_dir()]
    if not jobs:
        raise FileNotFoundError(
            f"{multirun_dir} holds no job folders (none has a .hydra/ subfolder): pass the folder "
            "that vaelab-train -m wrote, e.g. outputs/train/multiruns/<date_time>"
        )
    return sorted(jobs, key=lambda j: (j.num, str(j.path)))
