"""vaelab-eval ckpt_path=...: a trained run's test metrics, saved beside the run and printed.

Each evaluation gets its own folder, <run>/eval/<date_time>/, with metrics.json, the eval config
and log, so evaluating again (other K, other weights) never overwrites an earlier result.
Every metric is a torchmetrics Metric updated in a Lightning test loop (vaelab.metrics.evaluation),
so `trainer=ddp_sim` / `trainer=ddp` evaluates on several processes with the same numbers.
"""

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vaelab import console
from vaelab.builders import instantiate_callbacks, instantiate_loggers, trainer_switches
from vaelab.checkpoints import load_run, setup_run_data
from vaelab.console import configure_console, log
from vaelab.distributed import share_job_config
from vaelab.metrics.disentanglement_eval import disentanglement_enabled
from vaelab.metrics.evaluation import (
    DESCRIPTIONS,
    DISENTANGLEMENT_DESCRIPTIONS,
    MAIN_SAMPLER,
    Evaluation,
    build_feature_extractor,
    layer_descriptions,
    sampler_descriptions,
)
from vaelab.metrics.image_quality import SampleFidelity
from vaelab.run_dir import METRICS, write_json


def evaluate(cfg: DictConfig, feature_extractor=None) -> dict:
    """All test metrics of the checkpoint `cfg.ckpt_path`, written to <output_dir>/metrics.json.

    `feature_extractor` replaces Inception-v3 for FID/KID (uint8 [B, 3, H, W] -> [B, F]).
    """
    configure_console()
    output_dir = Path(cfg.paths.output_dir)
    if (output_dir / METRICS).exists():
        raise FileExistsError(f"{output_dir / METRICS} holds an earlier evaluation: choose a new "
                              "hydra.run.dir (the default is always new)")
    run_cfg, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    factors = disentanglement_enabled(cfg.disentanglement.enabled, datamodule.has_factors)
    if feature_extractor is None and cfg.fid.get("feature_extractor"):
        feature_extractor = instantiate(cfg.fid.feature_extractor)
    extractor = build_feature_extractor(cfg.fid.enabled, cfg.fid.get("weights_path"),
                                        feature_extractor)
    samplers = {name: instantiate(node) for name, node in (cfg.get("samplers") or {}).items()
                if node}
    if extractor is not None and MAIN_SAMPLER not in samplers:
        raise ValueError(f"samplers.{MAIN_SAMPLER} is missing: test/fid is the prior's FID "
                         "(conf/samplers/default.yaml)")
    setup_run_data(datamodule, "test")
    datamodule.index_test_batches = True
    references = datamodule.reference_images("test")
    num_test = len(references)
    nll_images = min(cfg.iwae.num_images or num_test, num_test)
    fid_images = min(cfg.fid.num_samples, num_test)
    seed = cfg.seed if cfg.get("seed") is not None else run_cfg.seed
    if console.global_rank() == 0:
        console.buffer_log_file()
        console.open_log_file(output_dir / f"{cfg.task_name}.log")
    log.info(f"evaluating {cfg.ckpt_path} on {num_test} test images; log p(x) with "
             f"K={cfg.iwae.num_samples} importance samples on {nll_images} of them: "
             f"{cfg.iwae.num_samples * nll_images:,} decodes")
    if extractor is not None and fid_images < cfg.fid.num_samples:
        log.info(f"FID/KID: the test set has {num_test} images, using {fid_images} a side")
    if factors:
        log.info("disentanglement metrics on the first "
                 f"{min(cfg.disentanglement.num_points, num_test)} test images and images "
                 "drawn from the factor grid (disentanglement.* in conf/eval.yaml)")
    evaluation = Evaluation(
        model, references=lambda index: references[index.to(references.device)],
        num_samples=cfg.iwae.num_samples, max_values=cfg.iwae.max_decoded_values,
        nll_images=nll_images, active_threshold=cfg.active_units.threshold,
        ssim_kernel_size=cfg.reconstruction.ssim_kernel_size, seed=seed,
        fidelity=SampleFidelity(extractor, cfg.fid.kid_subsets, cfg.fid.kid_subset_size,
                                sources=list(samplers))
        if extractor is not None else None, fid_images=fid_images, samplers=samplers,
        disentanglement=cfg.disentanglement if factors else None,
        factor_data=datamodule if factors else None)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg, have_loggers=bool(loggers))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                                     **trainer_switches(callbacks))
    # Seeded like training's final test, so the one-sample ELBO repeats the number it printed.
    L.seed_everything(seed, workers=True, verbose=False)
    try:
        with share_job_config(OmegaConf.to_container(cfg, resolve=True)):
            trainer.test(evaluation, datamodule=datamodule, verbose=False)
    finally:
        console.close_log_file()
    metrics = {**evaluation.results, "ckpt_path": str(cfg.ckpt_path)}
    if trainer.is_global_zero:
        write_json(output_dir / METRICS, metrics)
        print_table(evaluation.results, title=f"{cfg.ckpt_path} -> {output_dir / METRICS}",
                    extra={**sampler_descriptions(samplers),
                           **layer_descriptions(len(model.layer_sizes))})
    return metrics


def print_table(metrics: dict, title: str, extra: dict[str, str] | None = None) -> None:
    table = Table(title=title)
    for column in ("metric", "value", "meaning"):
        table.add_column(column)
    for name, meaning in {**DESCRIPTIONS, **(extra or {}), **DISENTANGLEMENT_DESCRIPTIONS}.items():
        if name in metrics:
            value = metrics[name]
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            table.add_row(name, shown, escape(meaning))
    Console().print(table)


if __name__ == "__main__":
    from vaelab.cli import evaluate as main

    main()
