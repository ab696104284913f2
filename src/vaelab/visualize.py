"""vaelab-viz ckpt_path=...: draw the latent-space figures of a trained run, without training."""

from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig

from vaelab.callbacks import LatentViz
from vaelab.checkpoints import load_run
from vaelab.configs import CONFIG_DIR


def visualize(cfg: DictConfig) -> dict[str, Path]:
    """Write `<output_dir>/figures/<name>/<checkpoint name>.png` for each of `cfg.figures`."""
    _, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    model.to(torch.device(cfg.device))
    drawer: LatentViz = instantiate(cfg.callbacks.latent_viz, figures=list(cfg.figures),
                                    output_dir=cfg.paths.output_dir)
    images = drawer.render(model, datamodule, drawer.select(model.latent_dim))
    stem = Path(cfg.ckpt_path).stem
    paths = {name: drawer.publish(name, image, loggers=[], step=0, stem=stem)
             for name, image in images.items()}
    rank_zero_info(f"figures written under {Path(cfg.paths.output_dir) / 'figures'}")
    return paths


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="viz")
def main(cfg: DictConfig) -> None:
    visualize(cfg)


if __name__ == "__main__":
    main()
