"""vaelab-viz ckpt_path=...: draw the latent-space figures of a trained run, without training,
and samples from each configured sampler (conf/samplers/)."""

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vaelab import interrupts
from vaelab.checkpoints import command_attempt, load_command_run
from vaelab.console import configure_console, log
from vaelab.viz.images import save_png


def visualize(cfg: DictConfig) -> dict[str, Path]:
    """Write `<output_dir>/figures/<name>/<checkpoint name>.png` for each figure of cfg.figures,
    as an attempt like training's (run_dir.Attempt)."""
    configure_console()
    with interrupts.handled():
        _, model, datamodule = load_command_run(cfg, "viz")
        model.to(torch.device(cfg.device))
        figures = instantiate(cfg.figures)
        samplers = {name: instantiate(node)
                    for name, node in (cfg.get("samplers") or {}).items() if node}
        with command_attempt(cfg, datamodule) as attempt:
            attempt.start()
            run, stem = attempt.run, Path(cfg.ckpt_path).stem
            with interrupts.during("drawing the figures"):
                model.setup_data(datamodule)
                for sampler in samplers.values():
                    sampler.fit(model, datamodule)
                images = {**figures.render(model, datamodule),
                          **figures.render_samples(model, datamodule, samplers)}
                paths = {name: save_png(image, run.figure(name, stem))
                         for name, image in images.items()}
            attempt.finish({"ckpt_path": str(cfg.ckpt_path),
                            "figures": {name: str(path) for name, path in paths.items()}})
            log.info(f"figures written under {run.figures}")
    return paths


if __name__ == "__main__":  # the command is vaelab.cli's (which imports this module)
    raise SystemExit("run vaelab-viz ..., or python -m vaelab viz ...")
