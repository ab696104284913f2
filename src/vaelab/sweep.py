"""Multirun job folders: what each job ran and how it ended (completed, failed, interrupted,
damaged, incomplete), and the jobs a sweep planned but never started ("not run")."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vaelab.run_dir import CONFIG, FAILED, HYDRA, METRICS


@dataclass
class Job:
    """One multirun job folder."""

    path: Path
    num: int
    #: completed (metrics.json), failed (failed.json), interrupted (SIGTERM, failed.json says
    #: so), damaged (an unreadable record), incomplete (still running, or killed), not run
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
    try:
        return OmegaConf.load(path) if path.is_file() else None
    except (OmegaConfBaseException, ValueError, OSError):  # a damaged file: treated as absent
        return None


def _read_record(path: Path) -> tuple[dict | None, str | None]:
    """(the JSON record, None), or (None, why it cannot be read) for a damaged file."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        size = path.stat().st_size if path.exists() else 0
        return None, f"{path.name} is damaged ({size} bytes: {type(err).__name__}: {err})"
    if not isinstance(record, dict):
        return None, f"{path.name} is damaged (not a JSON object)"
    return record, None


def read_job(path: Path) -> Job:
    """The state of the job folder `path` (one Hydra wrote: it has .hydra/)."""
    hydra_cfg = _load_yaml(path / HYDRA / "hydra.yaml")
    num = OmegaConf.select(hydra_cfg, "hydra.job.num", default=None) if hydra_cfg else None
    overrides = _load_yaml(path / HYDRA / "overrides.yaml")
    config = _load_yaml(path / CONFIG) or _load_yaml(path / HYDRA / "config.yaml")
    job = Job(path=path, num=num if num is not None else -1, status="incomplete",
              overrides=list(overrides or []), config=config or OmegaConf.create())
    failed, metrics = path / FAILED, path / METRICS
    # A job resumed after a failure (resume=auto) has both files: the newer one tells its state.
    if failed.is_file() and not (metrics.is_file()
                                 and metrics.stat().st_mtime > failed.stat().st_mtime):
        record, damage = _read_record(failed)
        if damage:
            job.status, job.error = "damaged", damage
        else:
            job.status = "interrupted" if record.get("interrupted") else "failed"
            job.error = f"{record.get('error_type')}: {record.get('message')}"
            if record.get("checkpoint") and record["checkpoint"] not in job.error:
                job.error += f" (checkpoint {record['checkpoint']})"
    elif metrics.is_file():
        record, damage = _read_record(metrics)
        if damage:
            job.status, job.error = "damaged", damage
        else:
            job.status, job.metrics = "completed", record
    return job


def planned_jobs(multirun_dir: Path) -> list[list[str]] | None:
    """The override lists of every job a basic-sweeper multirun planned (from the
    multirun.yaml Hydra writes when it starts), or None when that cannot be known."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config = _load_yaml(Path(multirun_dir) / "multirun.yaml")
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default="") if config else ""
    if not sweeper.endswith("BasicSweeper"):
        return None
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.select(config, "hydra.overrides.task", default=[]))
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        (batch,) = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # an override this parser cannot read back: plan unknown
        return None
    return batch


def collect_jobs(multirun_dir: Path) -> list[Job]:
    """Every job folder under `multirun_dir`, in launch order."""
    multirun_dir = Path(multirun_dir)
    if not multirun_dir.is_dir():
        raise FileNotFoundError(
            f"{multirun_dir} is not a folder: pass a multirun folder such as "
            "outputs/train/multiruns/<date_time> (vaelab-train -m ... prints it)"
        )
    jobs = [read_job(d.parent) for d in multirun_dir.rglob(HYDRA) if d.is_dir()]
    plan = planned_jobs(multirun_dir)
    started = {job.num for job in jobs}
    for num, overrides in enumerate(plan or []):
        if num not in started:
            jobs.append(Job(path=multirun_dir / f"{num}_(not run)", num=num, status="not run",
                            overrides=overrides, config=OmegaConf.create(),
                            error="never started (the sweep stopped before it)"))
    if not jobs:
        raise FileNotFoundError(
            f"{multirun_dir} holds no job folders (none has a .hydra/ subfolder): pass the folder "
            "that vaelab-train -m wrote, e.g. outputs/train/multiruns/<date_time>"
        )
    return sorted(jobs, key=lambda j: (j.num, str(j.path)))
