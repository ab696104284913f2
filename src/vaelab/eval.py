"""vaelab-eval ckpt_path=...: a trained run's test metrics, saved beside the run and printed.

Each evaluation gets its own folder, <run>/eval/<date_time>/, with metrics.json, the eval config
and log, so evaluating again (other K, other weights) never overwrites an earlier result; it
runs as an attempt like training's (run_dir.Attempt: the lock, failed.json, no overwriting).
Every metric is a torchmetrics Metric updated in a Lightning test loop (vaelab.metrics.evaluation),
so `trainer=ddp_sim` / `trainer=ddp` evaluates on several processes with the same numbers.
"""

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vaelab import interrupts
from vaelab.builders import instantiate_callbacks, instantiate_loggers, trainer_switches
from vaelab.checkpoints import command_attempt, load_command_run
from vaelab.console import configure_console, log, metrics_table
from vaelab.cpu import warn_if_oversubscribed
from vaelab.distributed import share_job_config
from vaelab.metric_specs import MAIN_SAMPLER, descriptions
from vaelab.metrics.disentanglement_eval import disentanglement_enabled, sampling_scores
from vaelab.metrics.evaluation import Evaluation, build_feature_extractor
from vaelab.metrics.image_quality import SampleFidelity
from vaelab.run_dir import Attempt


def evaluate(cfg: DictConfig, feature_extractor=None) -> dict:
    """All test metrics of the checkpoint `cfg.ckpt_path`, written to <output_dir>/metrics.json.

    `feature_extractor` replaces Inception-v3 for FID/KID (uint8 [B, 3, H, W] -> [B, F]).
    """
    configure_console()
    with interrupts.handled():
        run_cfg, model, datamodule = load_command_run(cfg, "eval")
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
        with command_attempt(cfg, datamodule, "test") as attempt:
            return evaluate_run(cfg, run_cfg, model, datamodule, attempt, extractor, factors,
                                samplers)


def evaluate_run(cfg: DictConfig, run_cfg: DictConfig, model, datamodule, attempt: Attempt,
                 extractor, factors: bool, samplers: dict) -> dict:
    """The evaluation itself, inside its attempt (data set up); see `evaluate`."""
    ckpt_path = cfg.ckpt_path
    datamodule.index_test_batches = True
    references = datamodule.reference_images("test")
    num_test = len(references)
    nll_images = min(cfg.iwae.num_images or num_test, num_test)
    fid_images = min(cfg.fid.num_samples, num_test)
    seed = cfg.seed if cfg.get("seed") is not None else run_cfg.seed
    attempt.start()
    warn_if_oversubscribed()
    log.info(f"evaluating {ckpt_path} on {num_test} test images; log p(x) with "
             f"K={cfg.iwae.num_samples} importance samples on {nll_images} of them: "
             f"{cfg.iwae.num_samples * nll_images:,} decodes")
    if extractor is not None and fid_images < cfg.fid.num_samples:
        log.info(f"FID/KID: the test set has {num_test} images, using {fid_images} a side")
    if factors:
        sampling_scores(datamodule)  # says so now when a subsample leaves two scores out
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
    with interrupts.during(f"evaluating {ckpt_path}"), \
            share_job_config(OmegaConf.to_container(cfg, resolve=True)):
        trainer.test(evaluation, datamodule=datamodule, verbose=False)
    metrics = {**evaluation.results, "ckpt_path": str(ckpt_path)}
    attempt.finish(metrics)
    if trainer.is_global_zero:
        log.info(metrics_table(evaluation.results,
                               descriptions(len(model.layer_sizes),
                                            {name: s.describe() for name, s in samplers.items()}),
                               title=f"{ckpt_path} -> {attempt.run.metrics}"))
    return metrics


if __name__ == "__main__":  # the command is vaelab.cli's (which imports this module)
    raise SystemExit("run vaelab-eval ..., or python -m vaelab eval ...")
