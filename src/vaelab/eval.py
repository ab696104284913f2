"""vaelab-eval ckpt_path=...: rebuild a run from its checkpoint and report its test metrics."""

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from vaelab.builders import instantiate_loggers
from vaelab.checkpoints import load_run
from vaelab.configs import CONFIG_DIR


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test metrics of the checkpoint `cfg.ckpt_path` (nats per image)."""
    run_cfg, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=instantiate_loggers(cfg.get("logger"))
                                     or False)
    L.seed_everything(cfg.seed if cfg.get("seed") is not None else run_cfg.seed, workers=True)
    trainer.test(model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
