"""vaelab-viz ckpt_path=...: draw the latent-space figures of a trained run, without training,
and samples from each configured sampler (conf/samplers/)."""

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vaelab.checkpoints import load_run, setup_run_data
from vaelab.console import configure_console, log
from vaelab.run_dir import RunDir
from vaelab.viz.images import save_png


def visualize(cfg: DictConfig) -> dict[str, Path]:
    """Write `<output_dir>/figures/<name>/<checkpoint name>.png` for each figure of cfg.figures."""
    configure_console()
    _, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    model.to(torch.device(cfg.device))
    figures = instantiate(cfg.figures)
    samplers = {name: instantiate(node) for name, node in (cfg.get("samplers") or {}).items()
                if node}
    setup_run_data(datamodule)
    model.setup_data(datamodule)
    for sampler in samplers.values():
        sampler.fit(model, datamodule)
    run, stem = RunDir(cfg.paths.output_dir), Path(cfg.ckpt_path).stem
    images = {**figures.render(model, datamodule),
              **figures.render_samples(model, datamodule, samplers)}
    paths = {name: save_png(image, run.figure(name, stem)) for name, image in images.items()}
    log.info(f"figures written under {run.figures}")
    return paths


if __name__ == "__main__":  # the command is vaelab.cli's (which imports this module)
    raise SystemExit("run vaelab-viz ..., or python -m vaelab viz ...")
