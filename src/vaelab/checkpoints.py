"""Checkpoint files: written atomically; a trained run (config, data, model) rebuilt from one."""

import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.models.vae import VAE


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place, so a process killed
    mid-write (SIGKILL, a node failure) leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # remote storage: no rename there, save as Lightning does
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def load_checkpoint(ckpt_path: str | Path) -> dict:
    """torch.load a vaelab checkpoint, with an error that says what to pass instead."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt "
            "(or another .ckpt that vaelab-train wrote)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "run_config" not in ckpt:
        raise ValueError(f"{path} has no run_config: it was not written by vaelab-train")
    return ckpt


def load_run(ckpt_path: str | Path,
             data_dir: str | None = None) -> tuple[DictConfig, VAE, InMemoryDataModule]:
    """The training run's config, its model with the checkpoint's weights, and its DataModule."""
    ckpt = load_checkpoint(ckpt_path)
    run_cfg = OmegaConf.create(ckpt["run_config"])
    if data_dir is not None and "data_dir" in run_cfg.data:
        with open_dict(run_cfg):
            run_cfg.data.data_dir = data_dir
    model: VAE = instantiate(run_cfg.model)
    model.load_state_dict(ckpt["state_dict"])
    model.run_config = ckpt["run_config"]
    model.eval()
    datamodule: InMemoryDataModule = instantiate(run_cfg.data)
    return run_cfg, model, datamodule
