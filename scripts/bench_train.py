"""Training speed: the full vaelab stack vs a minimal hand-written PyTorch loop, same invocation.

For each experiment both sides train the same model (same config, same initial weights), with
the same optimiser, batch size and in-memory MNIST, for the same number of timed steps after a
warm-up. (a) is `vaelab.train.train` with the default callbacks and loggers (the visualisation
callback `latent_viz` off); (b) is a bare loop. Runs alternate (a, b, a, b, ...) so drifting
load on a shared machine hits both; the median of the repeats is reported.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_train.py
"""

import argparse
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.nn import functional as F

from vaelab.configs import compose_config
from vaelab.train import train


def clocks() -> tuple[float, float]:
    """(wall time, CPU time of this process): CPU time is less disturbed by other processes."""
    return time.perf_counter(), time.process_time()


class StepTimer(L.Callback):
    """Wall and CPU time from the start of step `warmup` to the end of the last training step."""

    warmup = 0
    elapsed: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == StepTimer.warmup:
            StepTimer.start = clocks()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == trainer.max_steps:
            StepTimer.elapsed = tuple(e - s for e, s in zip(clocks(), StepTimer.start,
                                                            strict=True))


def compose(experiment: str, steps: int, warmup: int, output_dir: Path) -> DictConfig:
    cfg = compose_config("train", [
        f"experiment={experiment}",
        f"+trainer.max_steps={warmup + steps}",
        "trainer.accelerator=cpu",
        "test=false",
        "+callbacks.step_timer._target_=__main__.StepTimer",
        # visualisations off; every other default callback and logger stays
        "callbacks.latent_viz=null",
    ], output_dir)
    return cfg


def check_within_one_epoch(cfg: DictConfig, total_steps: int) -> None:
    """Refuse step counts that cross an epoch: (a) would then also validate and checkpoint
    inside the timed steps, work the raw loop does not do."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    per_epoch = len(datamodule.train_dataloader())
    if total_steps >= per_epoch:
        raise SystemExit(f"--warmup + --steps = {total_steps} reaches the end of the first "
                         f"epoch ({per_epoch} steps): use fewer so both sides only train")


def run_vaelab(cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall second and per CPU second of `vaelab.train.train`, timed steps only."""
    StepTimer.warmup, StepTimer.elapsed = warmup, None
    train(cfg)
    if StepTimer.elapsed is None:
        raise RuntimeError("the timed steps did not run: lower --steps/--warmup")
    return tuple(steps * cfg.data.batch_size / t for t in StepTimer.elapsed)


def run_raw(cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall and CPU second of a hand-written loop: same nets, optimiser, batch size
    and uint8 data."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)  # the same initial weights as vaelab's (same seed)
    encoder, decoder = model.encoder, model.decoder
    optimizer = model.optimizer(params=model.parameters())
    images = datamodule.images("train")
    batch_size = cfg.data.batch_size
    per_epoch = len(images) // batch_size
    order = torch.randperm(len(images))
    for step in range(warmup + steps):
        if step == warmup:
            start = clocks()
        if step % per_epoch == 0:
            order = torch.randperm(len(images))
        idx = order[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]
        x = torch.bernoulli(images[idx].float().div_(255.0))
        mu, logvar = encoder(x).chunk(2, dim=1)  # the diagonal Gaussian's features
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        loss = (recon + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return tuple(steps * batch_size / (e - s) for e, s in zip(clocks(), start, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["mnist_2d", "mnist_conv"])
    parser.add_argument("--steps", type=int, default=300, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before timing")
    parser.add_argument("--repeats", type=int, default=3, help="(a, b) pairs per experiment")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch default); 1 keeps figures steadier when "
                        "other processes share the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, lightning {L.__version__}, "
          f"{torch.get_num_threads()} threads, CPU")

    rows, peak_rss_mb = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            a, b = [], []
            for r in range(args.repeats):
                cfg = compose(experiment, args.steps, args.warmup, Path(tmp) / f"{experiment}{r}")
                check_within_one_epoch(cfg, args.steps + args.warmup)
                a.append(run_vaelab(cfg, args.steps, args.warmup))
                if peak_rss_mb is None:  # before any raw loop ran: the peak of (a) alone
                    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                b.append(run_raw(cfg, args.steps, args.warmup))
                print(f"{experiment} repeat {r}: vaelab {a[-1][0]:.0f} img/s "
                      f"({a[-1][1]:.0f} per CPU s), raw {b[-1][0]:.0f} img/s "
                      f"({b[-1][1]:.0f} per CPU s)", flush=True)
            rows.append((experiment, [x[0] for x in a], [x[0] for x in b],
                         [x[1] for x in a], [x[1] for x in b]))

    print(f"\n{args.steps} timed steps after {args.warmup} warm-up, batch size from the "
          f"experiment config, {args.repeats} alternating (a, b) pairs; img/s: median; "
          "ratio: median of the pairs' ratios")
    print(f"{'experiment':<12} {'vaelab img/s':>13} {'raw img/s':>10} {'ratio':>6}   "
          f"{'vaelab img/CPU-s':>16} {'raw img/CPU-s':>14} {'ratio':>6}")
    for experiment, a, b, a_cpu, b_cpu in rows:
        wall = statistics.median(x / y for x, y in zip(a, b, strict=True))
        cpu = statistics.median(x / y for x, y in zip(a_cpu, b_cpu, strict=True))
        print(f"{experiment:<12} {statistics.median(a):>13.0f} {statistics.median(b):>10.0f} "
              f"{wall:>6.3f}   {statistics.median(a_cpu):>16.0f} "
              f"{statistics.median(b_cpu):>14.0f} {cpu:>6.3f}")
    print(f"peak RSS of the process after the first vaelab run: {peak_rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
