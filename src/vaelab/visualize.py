"""vaelab-viz ckpt_path=...: draw the latent-space figures of a trained run, without training."""

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
        with command_attempt(cfg, datamodule) as attempt:
            attempt.start()
            run, stem = attempt.run, Path(cfg.ckpt_path).stem
            with interrupts.during("drawing the figures"):
                paths = {name: save_png(image, run.figure(name, stem))
                         for name, image in figures.render(model, datamodule).items()}
            attempt.finish({"ckpt_path": str(cfg.ckpt_path),
                            "figures": {name: str(path) for name, path in paths.items()}})
            log.info(f"figures written under {run.figures}")
    return paths


if __name__ == "__main__":
    from vaelab.cli import viz as main

    main()
