"""vaelab-train: compose a config, build data/model/trainer, fit, test, return the metric."""

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.builders import (
    finish_loggers,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
)
from vaelab.configs import CONFIG_DIR
from vaelab.distributed import is_launched_rank, launched_rank_config, share_job_config
from vaelab.resume import check_output_dir, keep_earlier_results, resolve_ckpt_path


@rank_zero_only
def save_run_files(cfg: DictConfig, output_dir: Path, metrics: dict[str, float] | None = None):
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if metrics is not None:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


def as_floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured VAE; returns every logged metric."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(output_dir, cfg.get("ckpt_path"), cfg.get("resume"))
    if check_output_dir(output_dir, ckpt_path):
        keep_earlier_results(output_dir)
    # Recorded as resolved, so config_resolved.yaml (and DDP's launched ranks) name the checkpoint.
    with open_dict(cfg):
        cfg.ckpt_path, cfg.resume = ckpt_path, None
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    # Stored in every checkpoint, so eval/viz can rebuild this run from the .ckpt alone.
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), have_loggers=bool(loggers))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_hyperparameters(cfg, model, loggers)
    save_run_files(cfg, output_dir)
    with share_job_config(output_dir / "config_resolved.yaml"):
        metrics = fit_and_test(cfg, trainer, model, datamodule)
    finish_loggers(loggers)
    save_run_files(cfg, output_dir, metrics)
    return metrics


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, model: L.LightningModule,
                 datamodule: L.LightningDataModule) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(as_floats(trainer.callback_metrics))
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            rank_zero_info("no best checkpoint (fast_dev_run or no ModelCheckpoint): testing "
                           "the current weights")
        # Re-seeding makes the test's posterior samples the same as vaelab-eval's.
        L.seed_everything(cfg.seed, workers=True)
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(as_floats(trainer.callback_metrics))
        if best:
            metrics["best_checkpoint"] = best  # type: ignore[assignment]
    return metrics


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    return optimized_metric(cfg, train(cfg))


def main() -> None:
    """vaelab-train; a DDP rank that Lightning launched trains its parent job's config instead."""
    if is_launched_rank():
        train(launched_rank_config())
    else:
        hydra_main()


if __name__ == "__main__":
    main()
