"""vaelab-eval ckpt_path=...: a trained run's test metrics, saved beside the run and printed.

Each evaluation gets its own folder, <run>/eval/<date_time>/, with metrics.json, the eval config
and log, so evaluating again (other K, other weights) never overwrites an earlier result.
"""

import json
import math
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table
from torch import nn

from vaelab.builders import instantiate_loggers
from vaelab.checkpoints import load_run
from vaelab.configs import CONFIG_DIR
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.metrics import SampleFidelity, load_inception, reconstruction_metrics
from vaelab.models.active_units import active_units
from vaelab.models.iwae import importance_weighted_log_likelihood
from vaelab.models.vae import VAE

#: What each metric in metrics.json means (also the table's last column).
DESCRIPTIONS = {
    "test/elbo": "ELBO, 1 posterior sample (nats/image)",
    "test/recon": "-log p(x|z), 1 sample (nats/image)",
    "test/kl": "KL(q(z|x) || p(z)) (nats/image)",
    "test/bpd": "-ELBO in bits/dim",
    "test/loss": "training objective on the test set",
    "test/nll": "-log p(x), importance-weighted bound with K samples (nats/image)",
    "test/nll_bpd": "-log p(x) in bits/dim",
    "test/nll_num_samples": "K, importance samples per image",
    "test/nll_num_images": "test images in the log p(x) estimate",
    "test/active_units": "latent dims with Cov_x(E_q[z|x]) > threshold",
    "test/latent_dim": "latent dims in total",
    "test/recon_mse": "MSE, reconstruction mean vs test image",
    "test/recon_psnr": "PSNR of that MSE (dB)",
    "test/recon_ssim": "mean SSIM, reconstruction vs test image",
    "test/fid": "FID, sample means vs test images",
    "test/kid_mean": "KID, sample means vs test images",
    "test/kid_std": "KID's standard deviation over subsets",
    "test/fid_num_samples": "images per side in FID/KID",
}


def build_feature_extractor(fid_cfg: DictConfig, feature_extractor: nn.Module | None
                            ) -> nn.Module | None:
    """The FID/KID feature network (None when fid.enabled=false); fails before any slow work."""
    if not fid_cfg.enabled:
        return None
    if feature_extractor is not None:
        return feature_extractor
    if fid_cfg.get("feature_extractor"):
        return instantiate(fid_cfg.feature_extractor)
    return load_inception(fid_cfg.get("weights_path"))


def test_images(datamodule: InMemoryDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """(model inputs, reference images), both uint8 [N, C, H, W].

    Inputs are the test split as the model sees it (binarised if the data is); references are
    the grey-level images before binarisation, which likelihood means are compared against.
    """
    datamodule.setup("test")
    inputs = datamodule.splits["test"][0].cpu()
    if datamodule.binarize == "none":
        return inputs, inputs
    return inputs, datamodule.load_splits()["test"][0]


@torch.no_grad()
def latent_metrics(model: VAE, datamodule: InMemoryDataModule, inputs: torch.Tensor,
                   references: torch.Tensor, cfg: DictConfig, device: torch.device,
                   progress: bool) -> dict[str, float]:
    """Importance-weighted -log p(x), active units and reconstruction error over the test set."""
    num_images = len(inputs) if cfg.iwae.num_images is None else min(cfg.iwae.num_images,
                                                                     len(inputs))
    recon = reconstruction_metrics(cfg.reconstruction.ssim_kernel_size).to(device)
    means, log_px = [], []
    batch = datamodule.eval_batch_size
    for start in track(range(0, len(inputs), batch), description="latents, log p(x)",
                       disable=not progress):
        x = datamodule.to_float(inputs[start:start + batch].to(device))
        mu, _ = model.encode(x)
        means.append(mu.cpu())
        reference = references[start:start + batch].to(device).float() / 255.0
        recon.update(model.likelihood.mean(model.decode(mu)), reference)
        if start < num_images:
            log_px.append(importance_weighted_log_likelihood(
                model, x[:num_images - start], cfg.iwae.num_samples, cfg.iwae.max_decodes).cpu())
    nll = -torch.cat(log_px).double().mean().item()
    metrics = {
        "test/nll": nll,
        "test/nll_num_samples": cfg.iwae.num_samples,
        "test/nll_num_images": num_images,
        "test/active_units": int(active_units(torch.cat(means),
                                              cfg.active_units.threshold).sum()),
        "test/latent_dim": model.latent_dim,
    }
    if model.likelihood.discrete:
        metrics["test/nll_bpd"] = nll / (inputs[0].numel() * math.log(2))
    metrics.update({f"test/recon_{k}": float(v) for k, v in recon.compute().items()})
    return metrics


@torch.no_grad()
def fidelity_metrics(model: VAE, references: torch.Tensor, extractor: nn.Module,
                     cfg: DictConfig, device: torch.device, seed: int) -> dict[str, float]:
    """FID and KID between `fid.num_samples` prior samples (likelihood means) and test images."""
    n = min(cfg.fid.num_samples, len(references))
    if n < cfg.fid.num_samples:
        rank_zero_info(f"FID/KID: the test set has {len(references)} images, using {n} a side")
    fidelity = SampleFidelity(extractor.to(device), cfg.fid.kid_subsets, cfg.fid.kid_subset_size)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n, cfg.fid.batch_size):
        size = min(cfg.fid.batch_size, n - start)
        fidelity.update(references[start:start + size].float() / 255.0, real=True)
        fidelity.update(model.sample(size, generator=generator), real=False)
    scores = fidelity.compute()
    return {"test/fid": scores["fid"], "test/kid_mean": scores["kid_mean"],
            "test/kid_std": scores["kid_std"], "test/fid_num_samples": n}


def print_table(metrics: dict[str, float], title: str) -> None:
    table = Table(title=title)
    for column in ("metric", "value", "meaning"):
        table.add_column(column)
    for name, meaning in DESCRIPTIONS.items():
        if name in metrics:
            value = metrics[name]
            shown = f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            table.add_row(name, shown, escape(meaning))
    Console().print(table)


def evaluate(cfg: DictConfig, feature_extractor: nn.Module | None = None) -> dict[str, float]:
    """All test metrics of the checkpoint `cfg.ckpt_path`, written to <output_dir>/metrics.json.

    `feature_extractor` replaces Inception-v3 for FID/KID (uint8 [B, 3, H, W] -> [B, F]).
    """
    output_dir = Path(cfg.paths.output_dir)
    if (output_dir / "metrics.json").exists():
        raise FileExistsError(f"{output_dir / 'metrics.json'} holds an earlier evaluation: "
                              "choose a new hydra.run.dir (the default is always new)")
    run_cfg, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    extractor = build_feature_extractor(cfg.fid, feature_extractor)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=instantiate_loggers(cfg.get("logger"))
                                     or False)
    seed = cfg.seed if cfg.get("seed") is not None else run_cfg.seed
    L.seed_everything(seed, workers=True)
    trainer.test(model, datamodule=datamodule)
    metrics: dict = {k: float(v) for k, v in trainer.callback_metrics.items()}

    device = trainer.strategy.root_device
    model.to(device).eval()
    inputs, references = test_images(datamodule)
    L.seed_everything(seed, workers=True)
    progress = cfg.trainer.get("enable_progress_bar", True) is not False
    metrics.update(latent_metrics(model, datamodule, inputs, references, cfg, device, progress))
    if extractor is not None:
        metrics.update(fidelity_metrics(model, references, extractor, cfg, device, seed))

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(
        json.dumps({**metrics, "ckpt_path": str(cfg.ckpt_path)}, indent=2, sort_keys=True))
    print_table(metrics, title=f"{cfg.ckpt_path} -> {output_dir / 'metrics.json'}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
