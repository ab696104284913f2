"""Training speed: the full vaelab stack vs a minimal hand-written PyTorch loop, same invocation.

For each experiment both sides train the same model (same config, same initial weights), with
the same optimiser, batch size and in-memory MNIST, for the same number of timed steps after a
warm-up. (a) is `vaelab.train.train` with the default callbacks and loggers (the visualisation
callback `latent_viz` off); (b) is a bare loop. Runs alternate (a, b, a, b, ...) so drifting
load on a shared machine hits both; the median of the repeats is reported. `--profile` adds one
more run of (a) under cProfile and prints where its timed steps spend their time: vaelab's code,
Lightning's, torch's Python and torch's kernels.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_train.py
    VAELAB_DATA_DIR=/path/to/data python scripts/bench_train.py --experiments mnist_2d --profile
"""

import argparse
import cProfile
import os
import pstats
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


def load() -> str:
    """The machine's load averages: other processes disturb the wall-clock figures."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def clocks() -> tuple[float, float]:
    """(wall time, CPU time of this process): CPU time is less disturbed by other processes."""
    return time.perf_counter(), time.process_time()


class StepTimer(L.Callback):
    """Wall and CPU time from the start of step `warmup` to the end of the last training step
    (profiled by `profiler` when one is set)."""

    warmup = 0
    elapsed: tuple[float, float] | None = None
    profiler: cProfile.Profile | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == StepTimer.warmup:
            StepTimer.start = clocks()
            if StepTimer.profiler is not None:
                StepTimer.profiler.enable()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == trainer.max_steps:
            if StepTimer.profiler is not None:
                StepTimer.profiler.disable()
            StepTimer.elapsed = tuple(e - s for e, s in zip(clocks(), StepTimer.start,
                                                            strict=True))


def compose(experiment: str, steps: int, warmup: int, output_dir: Path,
            overrides: list[str] = ()) -> DictConfig:
    cfg = compose_config("train", [
        f"experiment={experiment}",
        f"+trainer.max_steps={warmup + steps}",
        "trainer.accelerator=cpu",
        "test=false",
        "+callbacks.step_timer._target_=__main__.StepTimer",
        # visualisations off; every other default callback and logger stays
        "callbacks.latent_viz=null",
        *overrides,
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


#: where a function's code lives -> the part of the stack it belongs to (first match wins);
#: ctypes is torch's CUDA check, which loads the NVML library on every Adam step once
#: Lightning has set PYTORCH_NVML_BASED_CUDA_CHECK=1 (both sides pay it)
PARTS = (("vaelab", ("/vaelab/",)), ("Lightning", ("/lightning", "lightning_utilities")),
         ("torchmetrics", ("/torchmetrics/",)), ("torch (Python)", ("/torch/",)),
         ("torch kernels", ("torch.", "TensorBase", "torch._C")),
         ("CUDA check (ctypes)", ("ctypes",)))


def part_of(function: tuple[str, int, str]) -> str:
    """The part of the stack a cProfile entry (file, line, name) belongs to; a kernel called
    through an operator (a + b) counts for the Python function that applied it."""
    where = function[0] if function[0] != "~" else function[2]
    return next((part for part, marks in PARTS if any(m in where for m in marks)),
                "Python (other)")


def profile_vaelab(cfg: DictConfig, steps: int, warmup: int, top: int) -> None:
    """Print the own time per timed step of each part of the stack, and the top functions."""
    StepTimer.profiler = cProfile.Profile()
    try:
        run_vaelab(cfg, steps, warmup)
        stats = pstats.Stats(StepTimer.profiler).stats
    finally:
        StepTimer.profiler = None
    own: dict[str, float] = {}
    for function, (_, _, tottime, _, _) in stats.items():
        own[part_of(function)] = own.get(part_of(function), 0.0) + tottime
    total = sum(own.values())
    print(f"\n{cfg.task_name}: own time per timed step under cProfile (which inflates Python "
          "calls), by where the code lives")
    for part, seconds in sorted(own.items(), key=lambda item: -item[1]):
        print(f"  {part:<16} {1000 * seconds / steps:7.3f} ms  {100 * seconds / total:5.1f} %")
    print(f"top {top} functions by own time (ms per step, calls per step):")
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), (_, calls, tottime, _, _) in ranked:
        where = name if file == "~" else f"{file.split('site-packages/')[-1]}:{line}({name})"
        print(f"  {1000 * tottime / steps:7.3f} {calls / steps:6.1f}  "
              f"[{part_of((file, line, name))}] {where}")


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
    parser.add_argument("--profile", action="store_true",
                        help="also profile one run of (a): own time by part of the stack")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--override", nargs="*", default=[],
                        help="config overrides for both sides, e.g. data.val_size=1000")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, lightning {L.__version__}, "
          f"{torch.get_num_threads()} threads, CPU; {load()}")

    rows, peak_rss_mb = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            a, b = [], []
            for r in range(args.repeats):
                cfg = compose(experiment, args.steps, args.warmup,
                              Path(tmp) / f"{experiment}{r}", args.override)
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
            if args.profile:
                profile_vaelab(compose(experiment, args.steps, args.warmup,
                                       Path(tmp) / f"{experiment}_profile", args.override),
                               args.steps, args.warmup, args.top)

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
    print(f"at the end: {load()}")


if __name__ == "__main__":
    main()
