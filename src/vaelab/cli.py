"""The console commands. Only Hydra is imported here: `--help` and `--cfg job` answer without
loading torch or Lightning, which each command imports once a run really starts.

A DDP rank that Lightning launched (it re-runs the command line) runs its parent job's config
instead of composing a new run directory (vaelab.distributed).
"""

import hydra
from omegaconf import DictConfig

from vaelab.configs import CONFIG_DIR
from vaelab.distributed import is_launched_rank, launched_rank_config
from vaelab.entry import run_task


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _train(cfg: DictConfig) -> float | None:
    from vaelab.train import optimized_metric, train

    return run_task(lambda: optimized_metric(cfg, train(cfg)))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _eval(cfg: DictConfig) -> None:
    from vaelab.eval import evaluate

    run_task(lambda: evaluate(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="viz")
def viz(cfg: DictConfig) -> None:
    from vaelab.visualize import visualize

    run_task(lambda: visualize(cfg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="attr")
def attr(cfg: DictConfig) -> None:
    from vaelab.attr import attribute_vector_figure

    run_task(lambda: attribute_vector_figure(cfg))


def train() -> None:
    """vaelab-train."""
    if is_launched_rank():
        from vaelab.train import train as train_run

        train_run(launched_rank_config())
    else:
        _train()


def evaluate() -> None:
    """vaelab-eval."""
    if is_launched_rank():
        from vaelab.eval import evaluate as evaluate_run

        evaluate_run(launched_rank_config())
    else:
        _eval()


def report(argv: list[str] | None = None) -> None:
    """vaelab-report."""
    from vaelab.report import main

    main(argv)
