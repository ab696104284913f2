"""Build the Lightning pieces a config names: callbacks and loggers, each through `_target_`."""

import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary, ProgressBar
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from vaelab.console import log


class WandbRun(WandbLogger):
    """Lightning's WandbLogger without its `anonymous` argument, which wandb >= 0.19 ignores
    and warns about on every run."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._wandb_init.pop("anonymous", None)


def build(node: DictConfig, **kwargs):
    """instantiate(node), raising a component's own error (a ValueError naming the config key)
    instead of Hydra's InstantiationException wrapped around it."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if error.__cause__ is None:
            raise
        raise error.__cause__ from None


def _instantiate_group(group: DictConfig | None, kind: str) -> list:
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"the {kind} config must be a mapping of name -> {{_target_: ...}}")
    return [build(conf) for conf in group.values() if conf and "_target_" in conf]


def instantiate_callbacks(cfg: DictConfig, have_loggers: bool) -> list[L.Callback]:
    """The callbacks of cfg.callbacks; no progress bar with trainer.enable_progress_bar=false."""
    callbacks = _instantiate_group(cfg.get("callbacks"), "callbacks")
    if cfg.trainer.get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not have_loggers:
        # Lightning refuses an LR monitor without a logger; with logger=none it has nothing to do.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def trainer_switches(callbacks: list[L.Callback]) -> dict[str, bool]:
    """The trainer's enable_progress_bar and enable_model_summary: true only when such a
    callback is configured, as Lightning would otherwise add its own (and
    callbacks.progress=null or callbacks.model_summary=null would not remove them)."""
    return {"enable_progress_bar": any(isinstance(c, ProgressBar) for c in callbacks),
            "enable_model_summary": any(isinstance(c, ModelSummary) for c in callbacks)}


#: seconds an MLflow tracking server has to accept a connection before a run starts; MLflow's
#: own client retries an unreachable server for minutes (4 min 18 s, measured) before failing
MLFLOW_CONNECT_TIMEOUT = 10.0


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """The loggers of cfg.logger; an MLflow tracking server that does not answer is an error
    before anything runs."""
    for key, conf in (cfg or {}).items():
        if conf and "_target_" in conf and issubclass(get_class(conf._target_), MLFlowLogger):
            check_tracking_server(f"logger.{key}.tracking_uri", conf.get("tracking_uri"))
    return _instantiate_group(cfg, "logger")


def check_tracking_server(key: str, uri: str | None) -> None:
    """Raise a ConnectionError naming `key` unless the http(s) server of `uri` accepts a
    connection within MLFLOW_CONNECT_TIMEOUT seconds (other URIs are local stores)."""
    parts = urlsplit(uri or "")
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=MLFLOW_CONNECT_TIMEOUT).close()
    except OSError as error:
        raise ConnectionError(
            f"{key}={uri}: no MLflow server answers at {parts.hostname}:{port} ({error}): "
            "start it, or fix the URI (or MLFLOW_TRACKING_URI, which it defaults to), or drop "
            "the setting to log to the local store under outputs/") from None


def git_commit() -> str | None:
    """The source tree's commit, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@rank_zero_only
def log_hyperparameters(cfg: DictConfig, model: L.LightningModule, loggers: list[Logger]) -> None:
    """Send the resolved config, parameter counts and git commit to every logger."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("hydra", None)
    params["model/params/total"] = sum(p.numel() for p in model.parameters())
    params["model/params/trainable"] = sum(p.numel() for p in model.parameters()
                                           if p.requires_grad)
    params["git_commit"] = git_commit()
    for logger in loggers:
        logger.log_hyperparams(params)
    log.info(f"model: {params['model/params/total']:,} parameters")


@rank_zero_only
def finish_loggers(loggers: list[Logger], failed: bool = False) -> None:
    """Close runs that outlive the trainer (called in a `finally`), so that each job of a
    multirun, even after a failed one, gets its own W&B run."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=1 if failed else 0)
        elif failed:
            logger.finalize("failed")
