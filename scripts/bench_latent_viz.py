"""Overhead of the LatentViz callback: seconds per training epoch with and without it.

    python scripts/bench_latent_viz.py --data-dir /path/to/data        # mnist_2d, 2 epochs each

Trains the same experiment twice in this process (callbacks.latent_viz=null, then drawing every
epoch, the worst case), with TensorBoard logging both times, and prints seconds per epoch and
their ratio; then times single draws (all figures, PNGs and TensorBoard) on the trained model.
"""

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger

from vaelab.checkpoints import load_run, setup_run_data
from vaelab.configs import compose_config
from vaelab.train import train


class EpochTimer(L.Callback):
    """Wall time of each training epoch, its validation and epoch-end hooks included."""

    #: seconds per epoch of the latest fit (train() builds the callback from the config)
    seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # Added last to the callbacks, so it runs after LatentViz's hook.
        EpochTimer.seconds.append(time.perf_counter() - self._start)


def fit(overrides: list[str], out: Path) -> tuple[list[float], Path]:
    EpochTimer.seconds = []
    timer = "+callbacks.epoch_timer._target_=__main__.EpochTimer"
    train(compose_config("train", [*overrides, timer], out))
    return EpochTimer.seconds, out / "checkpoints" / "last.ckpt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="mnist_2d")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for both runs")
    args = parser.parse_args()
    common = [f"experiment={args.experiment}", f"trainer.max_epochs={args.epochs}",
              "logger=tensorboard", "test=false", "callbacks.progress=null",
              "trainer.enable_progress_bar=false"]
    if args.data_dir:
        common.append(f"data.data_dir={args.data_dir}")
    common += args.overrides
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, _ = fit([*common, "callbacks.latent_viz=null"], tmp / "without")
        with_viz, ckpt = fit([*common, "callbacks.latent_viz.every_n_epochs=1"], tmp / "with")

        cfg = compose_config("train", common, tmp / "draws")
        _, model, datamodule = load_run(ckpt)
        drawer = instantiate(cfg.callbacks.latent_viz)
        setup_run_data(datamodule)
        logger = TensorBoardLogger(tmp / "draws")
        draw_seconds = []
        for i in range(args.draws + 1):
            start = time.perf_counter()
            for name, image in drawer.figures.render(model, datamodule).items():
                drawer.publish(name, image, [logger], step=i, stem=f"draw_{i:03d}")
            draw_seconds.append(time.perf_counter() - start)
        draw_seconds = draw_seconds[1:]  # the first draw also loads the fixed images

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{args.experiment}: {args.epochs} epochs each")
    print(f"  without LatentViz      : {mean(base):7.2f} s/epoch  {[round(s, 2) for s in base]}")
    print(f"  drawing every epoch    : {mean(with_viz):7.2f} s/epoch  "
          f"{[round(s, 2) for s in with_viz]}")
    print(f"  ratio with/without     : {mean(with_viz) / mean(base):7.3f}")
    print(f"  one draw, all figures  : {mean(draw_seconds):7.2f} s "
          f"(mean of {args.draws}; = {100 * mean(draw_seconds) / mean(base):.1f}% of an epoch)")


if __name__ == "__main__":
    main()
