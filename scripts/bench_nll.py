"""Burda et al.'s VAE on MNIST for a few epochs, then its test log-likelihood with K=5000.

Trains `experiment=burda_vae` with the full vaelab stack, prints the learning curve (ELBO per
epoch) and saves it as learning_curve.png in the run folder, then runs `vaelab.eval.evaluate`
on the last checkpoint and reports -log p(x) beside the paper's 86.76 nats (3280 epochs).

With --ckpt it skips training and times the importance-weighted bound instead: decodes per
second of vaelab-eval (every metric in one Lightning test loop) against a plain loop that calls
`importance_weighted_log_likelihood` batch by batch (what vaelab-eval did before), on the same
images with the same K, alternating, in one process.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_nll.py --epochs 10
    VAELAB_DATA_DIR=/path/to/data python scripts/bench_nll.py --ckpt <run>/checkpoints/last.ckpt \
        --num-samples 1000 --nll-images 500 --repeats 3
"""

import argparse
import csv
import shlex
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from matplotlib.figure import Figure

from vaelab.checkpoints import load_run, setup_run_data
from vaelab.configs import compose_config
from vaelab.eval import evaluate
from vaelab.models.iwae import importance_weighted_log_likelihood
from vaelab.train import train

PAPER_NLL = 86.76  # Burda et al. (2016), Table 1: VAE, k=1, 3280 passes, test -log p(x), K=5000


def learning_curve(metrics_csv: Path) -> list[tuple[int, float, float]]:
    """(epoch, train ELBO, val ELBO) per epoch from the CSV logger's file."""
    train_elbo, val_elbo = {}, {}
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            if row.get("train/elbo"):
                train_elbo[int(row["epoch"])] = float(row["train/elbo"])
            if row.get("val/elbo"):
                val_elbo[int(row["epoch"])] = float(row["val/elbo"])
    return [(e + 1, train_elbo[e], val_elbo.get(e, float("nan"))) for e in sorted(train_elbo)]


def plot_curve(curve, nll: float, out: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    epochs = [e for e, _, _ in curve]
    ax.plot(epochs, [-t for _, t, _ in curve], marker="o", label="train -ELBO")
    ax.plot(epochs, [-v for _, _, v in curve], marker="o", label="val -ELBO")
    ax.scatter([epochs[-1]], [nll], color="C3", zorder=3, label="test -log p(x), K=5000")
    ax.axhline(PAPER_NLL, color="grey", ls="--", label="Burda et al. VAE, 3280 epochs")
    ax.set(xlabel="epoch", ylabel="nats / image", title="Burda et al. VAE on MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def eval_config(ckpt: Path, num_samples: int, nll_images: int | None, out: Path):
    return compose_config("eval", [
        f"ckpt_path={ckpt}", f"iwae.num_samples={num_samples}",
        f"iwae.num_images={'null' if nll_images is None else nll_images}",
        "fid.enabled=false", "logger=none", "trainer.enable_progress_bar=false"], out)


@torch.no_grad()
def plain_loop(ckpt: Path, num_samples: int, num_images: int, max_values: int) -> float:
    """Seconds for the bound on the first num_images test images, batch by batch."""
    _, model, datamodule = load_run(ckpt)
    setup_run_data(datamodule, "test")
    images = datamodule.images("test")[:num_images]
    start = time.perf_counter()
    for chunk in images.split(datamodule.eval_batch_size):
        importance_weighted_log_likelihood(model, datamodule.model_input(chunk), num_samples,
                                           max_values)
    return time.perf_counter() - start


def decode_speed(args) -> None:
    """Decodes/s of vaelab-eval and of the plain loop, alternating, medians of the repeats."""
    ckpt = Path(args.ckpt)
    out = Path(args.output_dir or f"outputs/bench_nll/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    decodes = args.num_samples * args.nll_images
    ours, plain = [], []
    for r in range(args.repeats):
        start = time.perf_counter()
        result = evaluate(eval_config(ckpt, args.num_samples, args.nll_images, out / f"eval{r}"))
        ours.append(decodes / (time.perf_counter() - start))
        max_values = compose_config("eval", [f"ckpt_path={ckpt}"], out).iwae.max_decoded_values
        plain.append(decodes / plain_loop(ckpt, args.num_samples, args.nll_images, max_values))
        print(f"repeat {r}: vaelab-eval {ours[-1]:,.0f} decodes/s (all metrics), plain loop "
              f"{plain[-1]:,.0f} decodes/s; test/nll {result['test/nll']:.2f}", flush=True)
    a, b = statistics.median(ours), statistics.median(plain)
    print(f"\nK={args.num_samples} x {args.nll_images} images = {decodes:,} decodes, "
          f"median of {args.repeats}")
    print(f"vaelab-eval (Lightning test loop, every metric): {a:>12,.0f} decodes/s")
    print(f"plain loop of importance_weighted_log_likelihood: {b:>11,.0f} decodes/s")
    print(f"ratio vaelab-eval / plain loop: {a / b:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=5000, help="K of the IWAE estimate")
    parser.add_argument("--nll-images", type=int, default=None,
                        help="estimate log p(x) on the first N test images (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--ckpt", default=None,
                        help="time the bound on this checkpoint instead of training")
    parser.add_argument("--repeats", type=int, default=3, help="with --ckpt: alternating pairs")
    parser.add_argument("--output-dir", default=None,
                        help="run folder (default: outputs/bench_nll/<date_time>)")
    parser.add_argument("overrides", nargs="*", help="extra train overrides, e.g. "
                        "model/objective=iwae model.objective.num_samples=5")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    if args.ckpt:
        if args.nll_images is None:
            parser.error("--ckpt needs --nll-images (the timed test images)")
        return decode_speed(args)
    run_dir = Path(args.output_dir or f"outputs/bench_nll/{datetime.now():%Y-%m-%d_%H-%M-%S}")

    start = time.perf_counter()
    train_cfg = compose_config("train", [
        "experiment=burda_vae", f"trainer.max_epochs={args.epochs}", "logger=csv",
        "callbacks.progress=null", "trainer.enable_progress_bar=false",
        *args.overrides], run_dir)
    train(train_cfg)
    train_s = time.perf_counter() - start

    start = time.perf_counter()
    result = evaluate(eval_config(run_dir / "checkpoints" / "last.ckpt", args.num_samples,
                                  args.nll_images,
                                  run_dir / "eval" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}"))
    eval_s = time.perf_counter() - start

    curve = learning_curve(run_dir / "csv" / "version_0" / "metrics.csv")
    plot_curve(curve, result["test/nll"], run_dir / "learning_curve.png")
    print("\nepoch  train -ELBO  val -ELBO")
    for epoch, t, v in curve:
        print(f"{epoch:>5}  {-t:>11.2f}  {-v:>9.2f}")
    print(f"\ntraining: {args.epochs} epochs in {train_s / 60:.1f} min; "
          f"evaluation: {eval_s / 60:.1f} min")
    print(f"test -ELBO (1 sample, every test image): {-result['test/elbo']:.2f} nats; on the "
          f"log p(x) images, from the same K samples: {-result['test/nll_elbo']:.2f} nats")
    print(f"test -log p(x), K={result['test/nll_num_samples']} on "
          f"{result['test/nll_num_images']} test images: {result['test/nll']:.2f} nats "
          f"({result['test/nll_bpd']:.4f} bits/dim); active units "
          f"{result['test/active_units']}/{result['test/latent_dim']}")
    print(f"Burda et al. (2016) VAE, 3280 epochs: {PAPER_NLL:.2f} nats")
    print(f"learning curve: {run_dir / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
