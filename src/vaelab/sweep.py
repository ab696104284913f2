"""Multirun job folders: what each job ran and how it ended (completed, failed, interrupted,
damaged, incomplete), the jobs a sweep planned but never started ("not run"), and the guard that
keeps a new sweep out of an earlier sweep's folder."""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
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


class DamagedFile(ValueError):
    """A job file that exists but cannot be read."""


def _load_yaml(path: Path):
    """The YAML file's content, None when absent; DamagedFile when it cannot be read."""
    if not path.is_file():
        return None
    try:
        return OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as err:
        name = f"{HYDRA}/{path.name}" if path.parent.name == HYDRA else path.name
        first = str(err).splitlines()[0] if str(err) else ""
        raise DamagedFile(f"{name} is damaged ({type(err).__name__}: {first})") from None


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
    """The state of the job folder `path`: one Hydra wrote (it has .hydra/), or one a job that
    failed before it started left with its failed.json alone."""
    job = Job(path=path, num=-1, status="incomplete", overrides=[], config=OmegaConf.create())
    try:
        hydra_cfg = _load_yaml(path / HYDRA / "hydra.yaml")
        num = OmegaConf.select(hydra_cfg, "hydra.job.num", default=None) if hydra_cfg else None
        job.num = num if num is not None else -1
        job.overrides = list(_load_yaml(path / HYDRA / "overrides.yaml") or [])
        job.config = _load_yaml(path / CONFIG) or _load_yaml(path / HYDRA / "config.yaml") \
            or OmegaConf.create()
    except DamagedFile as damage:
        job.status, job.error = "damaged", str(damage)
    failed, metrics = path / FAILED, path / METRICS
    failure, failure_damage = _read_record(failed) if failed.is_file() else (None, None)
    if failure:  # a job that failed before it started has no .hydra/: its record says which
        job.num = failure.get("job_num", job.num) if job.num == -1 else job.num
        job.overrides = job.overrides or list(failure.get("overrides", []))
    if job.status == "damaged":
        return job
    # metrics.json: some attempt completed (a later failed attempt never demotes it; a job
    # resumed after a failure has both files).
    if metrics.is_file():
        record, damage = _read_record(metrics)
        if damage:
            job.status, job.error = "damaged", damage
            return job
        job.status, job.metrics = "completed", record
        if failure and failed.stat().st_mtime > metrics.stat().st_mtime:
            job.error = f"a later attempt failed: {describe_failure(failure)}"
    elif failure_damage:
        job.status, job.error = "damaged", failure_damage
    elif failure:
        job.status = "interrupted" if failure.get("interrupted") else "failed"
        job.error = describe_failure(failure)
    return job


def describe_failure(record: dict) -> str:
    """A failed.json record in one line: the error, and an interrupted run's checkpoint."""
    error = f"{record.get('error_type')}: {record.get('message')}"
    if record.get("checkpoint") and record["checkpoint"] not in error:
        error += f" (checkpoint {record['checkpoint']})"
    return error


def planned_jobs(multirun_dir: Path) -> list[list[str]] | None:
    """The override lists of every job a basic-sweeper multirun planned (from the
    multirun.yaml Hydra writes when it starts), or None when that cannot be known."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        config = _load_yaml(Path(multirun_dir) / "multirun.yaml")
    except DamagedFile:
        return None
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
    folders = {d.parent for d in multirun_dir.rglob(HYDRA) if d.is_dir()}
    folders |= {f.parent for f in multirun_dir.rglob(FAILED) if f.parent.parent == multirun_dir}
    jobs = [read_job(folder) for folder in sorted(folders)]
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


def holds_jobs(sweep_dir: Path) -> bool:
    """Whether a folder holds an earlier sweep: its multirun.yaml or a job folder."""
    sweep_dir = Path(sweep_dir)
    return sweep_dir.is_dir() and ((sweep_dir / "multirun.yaml").is_file() or any(
        (d / HYDRA).is_dir() or (d / FAILED).is_file() for d in sweep_dir.iterdir()))


class SweepGuard(Callback):
    """A Hydra callback (conf/hydra/default.yaml): a multirun into a folder that holds an
    earlier sweep runs only to continue it (resume=auto). Otherwise it stops before Hydra
    writes anything there (its multirun.yaml, new jobs beside the old ones)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if OmegaConf.select(config, "resume", default=None) == "auto" or not holds_jobs(sweep_dir):
            return
        from vaelab.console import configure_console, log

        configure_console()
        log.error(f"hydra.sweep.dir={sweep_dir} holds an earlier sweep's jobs, which a new sweep "
                  "never changes: continue that sweep with the same command plus resume=auto "
                  "(finished jobs only test again, new values run as new jobs), or choose a new "
                  "hydra.sweep.dir")
        sys.exit(1)
