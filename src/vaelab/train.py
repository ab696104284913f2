"""vaelab-train: compose a config, build data/model/trainer, fit, test, return the metric."""

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.builders import (
    build,
    finish_loggers,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    trainer_switches,
)
from vaelab.checkpoints import RunState, best_checkpoint, interrupt_checkpoint, resume_from
from vaelab.config_checks import check_train_config
from vaelab.configs import named_output_dir, sweep_group
from vaelab.console import configure_console, log, metrics_table
from vaelab.cpu import warn_if_oversubscribed
from vaelab.distributed import is_launched_rank, share_job_config
from vaelab.hook_dispatch import skip_noop_hooks
from vaelab.metrics.evaluation import DESCRIPTIONS
from vaelab.run_dir import Attempt, RunDir, task_config


class RunInterrupted(SystemExit):
    """A run stopped by SIGTERM after checkpointing; exits with status 143 (128 + SIGTERM),
    which schedulers and shells read as "terminated"."""

    def __init__(self, message: str):
        super().__init__(143)
        self.message = message

    def __str__(self) -> str:
        return self.message


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured VAE in cfg.paths.output_dir; returns the final metrics."""
    configure_console()
    run = RunDir(cfg.paths.output_dir)
    if not is_launched_rank():  # launched DDP ranks get their parent's resolved config
        ckpt_path = resume_from(run, cfg.get("ckpt_path"), cfg.get("resume"), named_output_dir())
        with open_dict(cfg):  # recorded as resolved, so config_resolved.yaml names the file
            cfg.ckpt_path, cfg.resume = ckpt_path, None
    else:
        ckpt_path = cfg.get("ckpt_path")
    with Attempt(run, cfg) as attempt:
        log.info(f"run directory: {run.path}")
        warn_if_oversubscribed()
        check_train_config(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build(cfg.data)
        model = build(cfg.model)
        loggers = instantiate_loggers(cfg.get("logger"))
        failed = True
        try:
            run_config = OmegaConf.to_container(task_config(cfg), resolve=True,
                                                enum_to_str=True)
            callbacks = [*instantiate_callbacks(cfg, have_loggers=bool(loggers)),
                         RunState(run_config, on_start=attempt.start)]
            trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks,
                                             logger=loggers or False,
                                             **trainer_switches(callbacks))
            skip_noop_hooks(trainer.callbacks, model)
            log_hyperparameters(cfg, model, loggers)
            with share_job_config(run_config):
                metrics = fit_and_test(cfg, trainer, model, datamodule, ckpt_path, attempt)
            failed = False
        finally:
            finish_loggers(loggers, failed)
        attempt.finish(metrics)
        if "tested_checkpoint" in metrics:
            log.info(metrics_table(metrics, DESCRIPTIONS,
                                   f"test metrics of {metrics['tested_checkpoint']}"))
        log.info(f"metrics: {run.metrics}" + (f"; best checkpoint: {metrics['best_checkpoint']}"
                                              if metrics.get("best_checkpoint") else ""))
    return metrics


def fit_and_test(cfg: DictConfig, trainer, model, datamodule, ckpt_path: str | None,
                 attempt) -> dict:
    """trainer.fit, then trainer.test of the best checkpoint; the metrics with the paths of the
    checkpoints they come from."""
    metrics: dict = {}
    if cfg.get("train", True):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:
            saved = interrupt_checkpoint(trainer)
            attempt.interrupt_checkpoint = saved
            raise RunInterrupted(interrupted_message(cfg, trainer.global_step, saved)) from None
        if "val/elbo" not in trainer.callback_metrics and not trainer.fast_dev_run:
            # resumed from a run that had already finished: nothing trained, validate once
            trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(as_floats(trainer.callback_metrics))
    attempt.start()  # no-op unless fit had nothing left to do (a finished run, resumed)
    best = best_checkpoint(trainer)
    if cfg.get("test", True):
        if not best:
            log.info("no best checkpoint (fast_dev_run or no ModelCheckpoint): testing the "
                     "current weights")
        # Re-seeding makes the test's posterior samples the same as vaelab-eval's.
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False,
                     weights_only=True)
        metrics.update(as_floats(trainer.callback_metrics))
        metrics["tested_checkpoint"] = best or "the final weights (not saved)"
    if best:
        metrics["best_checkpoint"] = best
    return metrics


def interrupted_message(cfg: DictConfig, step: int, checkpoint: Path | None) -> str:
    """What a run stopped by SIGTERM says: where it stopped, and how to continue it."""
    message = f"terminated (SIGTERM) at step {step}"
    if checkpoint is not None:
        message += f"; checkpoint {checkpoint}"
    if sweep_group(cfg.task_name):
        sweep_dir = HydraConfig.get().sweep.dir
        return message + ("; the sweep stops here and its later jobs do not run (vaelab-report "
                          "lists them): continue it with the same command plus "
                          f"hydra.sweep.dir={sweep_dir} resume=auto")
    return message + (f": continue with the same command plus hydra.run.dir="
                      f"{cfg.paths.output_dir} resume=auto")


def as_floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


if __name__ == "__main__":  # the command is vaelab.cli's (which imports this module)
    raise SystemExit("run vaelab-train ..., or python -m vaelab train ...")
