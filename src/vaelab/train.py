"""vaelab-train: compose a config, build data/model/trainer, fit, test, return the metric."""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab import interrupts
from vaelab.builders import (
    build,
    finish_loggers,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    trainer_switches,
)
from vaelab.checkpoints import (
    RunState,
    best_checkpoint,
    check_continuation,
    interrupt_checkpoint,
    resume_from,
)
from vaelab.config_checks import check_train_config
from vaelab.configs import named_output_dir
from vaelab.console import configure_console, log, metrics_table
from vaelab.cpu import warn_if_oversubscribed
from vaelab.distributed import is_launched_rank, share_job_config
from vaelab.hook_dispatch import skip_noop_hooks
from vaelab.interrupts import Interrupted
from vaelab.metric_specs import descriptions
from vaelab.run_dir import Attempt, RunDir, continue_hint, multirun, task_config


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured VAE in cfg.paths.output_dir; returns the final metrics."""
    configure_console()
    run = RunDir(cfg.paths.output_dir)
    with interrupts.handled(), Attempt(run, cfg) as attempt:
        log.info(f"run directory: {run.path}")
        warn_if_oversubscribed()
        check_train_config(cfg)
        ckpt_path = continued_from(cfg, run)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        with interrupts.during("building the model"):
            datamodule = build(cfg.data)
            model = build(cfg.model)
            check_continuation(ckpt_path, cfg, model)
        loggers = instantiate_loggers(cfg.get("logger"))
        failed = True
        try:
            run_config = OmegaConf.to_container(task_config(cfg), resolve=True,
                                                enum_to_str=True)

            def begin() -> None:
                """Once training really starts: take the directory, then attach the loggers
                (their folders are made only now, so a start that fails leaves none; under
                fast_dev_run Lightning's stand-in, which logs nothing)."""
                attempt.start()
                if not attached:
                    attached.append(True)
                    trainer.loggers = [DummyLogger()] if trainer.fast_dev_run and loggers \
                        else loggers
                    log_hyperparameters(cfg, model, trainer.loggers)

            attached: list[bool] = []

            # First among the callbacks: the others find the loggers attached at train start.
            run_state = RunState(run_config, on_start=begin)
            callbacks = [run_state, *instantiate_callbacks(cfg, have_loggers=bool(loggers)),
                         *([OptimizedMetricCheck(cfg.optimized_metric)]
                           if cfg.get("optimized_metric") else [])]
            trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False,
                                             **trainer_switches(callbacks))
            skip_noop_hooks(trainer.callbacks, model)
            with share_job_config(run_config):
                metrics = fit_and_test(cfg, trainer, model, datamodule, ckpt_path, attempt,
                                       run_state, begin)
            failed = False
        finally:
            finish_loggers(loggers, failed)
        attempt.finish(metrics)
        if "tested_checkpoint" in metrics:
            log.info(metrics_table(metrics, descriptions(len(model.layer_sizes), factors=False),
                                   f"test metrics of {metrics['tested_checkpoint']}"))
        log.info(f"metrics: {run.metrics}" + (f"; best checkpoint: {metrics['best_checkpoint']}"
                                              if metrics.get("best_checkpoint") else ""))
    return metrics


def continued_from(cfg: DictConfig, run: RunDir) -> str | None:
    """The checkpoint this attempt continues from (see checkpoints.resume_from), recorded in
    cfg as resolved, so config_resolved.yaml names the file."""
    if is_launched_rank():  # launched DDP ranks get their parent's resolved config
        return cfg.get("ckpt_path")
    with interrupts.during("checking the checkpoint to continue from"):
        ckpt_path = resume_from(run, cfg.get("ckpt_path"), cfg.get("resume"), named_output_dir())
    with open_dict(cfg):
        cfg.ckpt_path, cfg.resume = ckpt_path, None
    return ckpt_path


def fit_and_test(cfg: DictConfig, trainer, model, datamodule, ckpt_path: str | None,
                 attempt, run_state: RunState, begin) -> dict:
    """trainer.fit, then trainer.test of the best checkpoint; the metrics with the paths of the
    checkpoints they come from."""
    metrics: dict = {}
    if cfg.get("train", True):
        with interrupts.during("training"), \
                stopped_training(cfg, trainer, attempt, graceful=True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            interrupts.check()  # a signal Lightning took note of but did not stop for
        if "val/elbo" not in trainer.callback_metrics and not trainer.fast_dev_run:
            # resumed from a run that had already finished: nothing trained. Its final metrics
            # are the ones its checkpoint was saved with (older checkpoints: validate again).
            if run_state.restored_metrics:
                metrics.update(run_state.restored_metrics)
            else:
                trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(as_floats(trainer.callback_metrics))
    begin()  # a no-op unless fit had nothing left to do (a finished run, resumed)
    best = best_checkpoint(trainer)
    if cfg.get("test", True):
        if not best:
            log.info("no best checkpoint (fast_dev_run or no ModelCheckpoint): testing the "
                     "current weights")
        # Re-seeding makes the test's posterior samples the same as vaelab-eval's.
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        with interrupts.during(f"testing {best or 'the final weights'}"), \
                stopped_training(cfg, trainer, attempt):
            trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False,
                         weights_only=True)
        metrics.update(as_floats(trainer.callback_metrics))
        metrics["tested_checkpoint"] = best or "the final weights (not saved)"
    if best:
        metrics["best_checkpoint"] = best
    return metrics


@contextmanager
def stopped_training(cfg: DictConfig, trainer: L.Trainer, attempt: Attempt,
                     graceful: bool = False) -> Iterator[None]:
    """A signal stops the run with a message that says where it stopped and how to continue
    it, and exits with 128 + the signal (Lightning's own SIGTERMException is a SystemExit with
    status 0). `graceful` (fitting): a first signal lets Lightning stop after the current
    batch and save interrupted.ckpt."""
    try:
        if graceful:
            with interrupts.graceful():
                yield
        else:
            yield
    except SIGTERMException:
        saved = interrupt_checkpoint(trainer)
        attempt.interrupt_checkpoint = saved
        signum = interrupts.received() or signal.SIGTERM
        stopped = f"stopped by {interrupts.signal_name(signum)} at step {trainer.global_step}"
        raise Interrupted(signum, interrupted_message(cfg, stopped, saved)) from None
    except Interrupted as stop:
        raise Interrupted(stop.signum, interrupted_message(cfg, stop.message)) from None


def interrupted_message(cfg: DictConfig, stopped: str, checkpoint: Path | None = None) -> str:
    """What a run stopped by a signal says: where it stopped, and how to continue it."""
    message = stopped
    if checkpoint is not None:
        message += f"; checkpoint {checkpoint}"
    if multirun():
        return message + ("; the sweep stops here and its later jobs do not run (vaelab-report "
                          "lists them): continue it with the same command plus "
                          f"{continue_hint(cfg.paths.output_dir)}")
    return message + (": continue with the same command plus "
                      f"{continue_hint(cfg.paths.output_dir)}")


class OptimizedMetricCheck(L.Callback):
    """Stops a run whose `optimized_metric` is not logged as soon as that shows: val/ and test/
    names after the sanity-check validation, other names after the first epoch (not after the
    whole run, when Hydra's sweeper asks for it)."""

    def __init__(self, name: str):
        self.name = name
        self._epochs_done = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        stage, _, metric = self.name.partition("/")
        if stage in ("val", "test"):
            self._check(trainer, f"val/{metric}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        self._epochs_done += 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        if self._epochs_done:
            self._check(trainer, self.name.replace("test/", "val/", 1))

    def _check(self, trainer: L.Trainer, logged_as: str) -> None:
        if logged_as not in trainer.callback_metrics:
            raise ValueError(f"optimized_metric={self.name} is not logged by this run; it logs "
                           f"{sorted(trainer.callback_metrics)} (and test/* like val/*): "
                           "name one of those")


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
