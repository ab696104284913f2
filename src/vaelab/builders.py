"""Build the Lightning pieces a config names: callbacks and loggers, each through `_target_`."""

import subprocess
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf


def _instantiate_group(group: DictConfig | None, kind: str) -> list:
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"the {kind} config must be a mapping of name -> {{_target_: ...}}")
    return [instantiate(conf) for conf in group.values() if conf and "_target_" in conf]


def instantiate_callbacks(cfg: DictConfig | None, have_loggers: bool) -> list[L.Callback]:
    callbacks = _instantiate_group(cfg, "callbacks")
    if not have_loggers:
        # Lightning refuses an LR monitor without a logger; with logger=none it has nothing to do.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group(cfg, "logger")


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
    rank_zero_info(f"model: {params['model/params/total']:,} parameters")


@rank_zero_only
def finish_loggers(loggers: list[Logger]) -> None:
    """Close runs that outlive the trainer, so each job of a multirun gets its own W&B run."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
