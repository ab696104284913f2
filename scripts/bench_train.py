"""Training speed: the full vaelab stack vs a minimal hand-written PyTorch loop, same invocation.

For each experiment every side trains the same model (same config, same initial weights), with
the same optimiser, batch size and in-memory MNIST, for the same number of timed steps after a
warm-up. (a) is `vaelab.train.train` with the default callbacks and loggers (the visualisation
callback `latent_viz` off); (b) is a bare loop; (c) is (b)'s step as the training_step of a bare
LightningModule under `Trainer(barebones=True)`: the floor Lightning's own loop sets, which no
Lightning-based tool goes below. Runs alternate (a, b, c, a, b, c, ...) so drifting load on a
shared machine hits all three; the median of the repeats is reported. `--profile` adds one
more run of (a) and of (c) under cProfile and prints where their timed steps spend their time:
vaelab's code, Lightning's, torch's Python and torch's kernels.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_train.py
    VAELAB_DATA_DIR=/path/to/data python scripts/bench_train.py --experiments mnist_2d --profile
"""

import argparse
import cProfile
import logging
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
from torch import nn
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
                         f"epoch ({per_epoch} steps): use fewer so every side only trains")


def timed(fit, cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall second and per CPU second of the timed steps of `fit()`, a Lightning
    fit with a StepTimer among its callbacks."""
    StepTimer.warmup, StepTimer.elapsed = warmup, None
    fit()
    if StepTimer.elapsed is None:
        raise RuntimeError("the timed steps did not run: lower --steps/--warmup")
    return tuple(steps * cfg.data.batch_size / t for t in StepTimer.elapsed)


def run_vaelab(cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall second and per CPU second of `vaelab.train.train`, timed steps only."""
    return timed(lambda: train(cfg), cfg, steps, warmup)


#: where a function's code lives -> the part of the stack it belongs to (first match wins);
#: ctypes is torch's CUDA check, which loads the NVML library on every Adam step once
#: Lightning has set PYTORCH_NVML_BASED_CUDA_CHECK=1 (every side pays it)
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


def profile_side(side: str, run, cfg: DictConfig, steps: int, warmup: int, top: int) -> None:
    """Print the own time per timed step of each part of the stack, and the top functions, of
    one more run of a side timed by StepTimer (vaelab's or bare Lightning's)."""
    StepTimer.profiler = cProfile.Profile()
    try:
        run(cfg, steps, warmup)
        stats = pstats.Stats(StepTimer.profiler).stats
    finally:
        StepTimer.profiler = None
    own: dict[str, float] = {}
    for function, (_, _, tottime, _, _) in stats.items():
        own[part_of(function)] = own.get(part_of(function), 0.0) + tottime
    total = sum(own.values())
    calls = sum(ncalls for _, ncalls, _, _, _ in stats.values())
    print(f"\n{cfg.task_name}, {side}: own time per timed step under cProfile (which inflates "
          f"Python calls), by where the code lives; {calls / steps:.0f} function calls per step")
    for part, seconds in sorted(own.items(), key=lambda item: -item[1]):
        print(f"  {part:<16} {1000 * seconds / steps:7.3f} ms  {100 * seconds / total:5.1f} %")
    print(f"top {top} functions by own time (ms per step, calls per step):")
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), (_, calls, tottime, _, _) in ranked:
        where = name if file == "~" else f"{file.split('site-packages/')[-1]}:{line}({name})"
        print(f"  {1000 * tottime / steps:7.3f} {calls / steps:6.1f}  "
              f"[{part_of((file, line, name))}] {where}")


class RawBatches:
    """One epoch of uint8 image batches [B, C, H, W] in a fresh random order, by indexing."""

    def __init__(self, images: torch.Tensor, batch_size: int):
        self.images, self.batch_size = images, batch_size

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.images))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.images[order[start:start + self.batch_size]]


def raw_loss(encoder: nn.Module, decoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The hand-written step's loss: the negative ELBO of dynamically binarised uint8 images."""
    x = torch.bernoulli(images.float().div_(255.0))
    mu, logvar = encoder(x).chunk(2, dim=1)  # the diagonal Gaussian's features
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    logits = decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return (recon + kl).mean()


def raw_parts(cfg: DictConfig):
    """(encoder, decoder, optimiser partial, batches) as vaelab builds them: the same initial
    weights as vaelab's run (same seed) and the same uint8 training images."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    return (model.encoder, model.decoder, model.optimizer,
            RawBatches(datamodule.images("train"), cfg.data.batch_size))


def run_raw(cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall and CPU second of a hand-written loop: same nets, optimiser, batch size
    and uint8 data."""
    encoder, decoder, make_optimizer, batches = raw_parts(cfg)
    optimizer = make_optimizer(params=[*encoder.parameters(), *decoder.parameters()])
    for step, images in enumerate(batches):  # within one epoch (check_within_one_epoch)
        if step == warmup:
            start = clocks()
        loss = raw_loss(encoder, decoder, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 == warmup + steps:
            break
    return tuple(steps * cfg.data.batch_size / (e - s)
                 for e, s in zip(clocks(), start, strict=True))


class LightningFloor(L.LightningModule):
    """The raw loop's step as a LightningModule, with nothing else: what Lightning's loop alone
    adds to it."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, make_optimizer):
        super().__init__()
        self.encoder, self.decoder, self.make_optimizer = encoder, decoder, make_optimizer

    def training_step(self, batch, batch_idx):
        return raw_loss(self.encoder, self.decoder, batch)

    def configure_optimizers(self):
        return self.make_optimizer(params=self.parameters())


def run_lightning_floor(cfg: DictConfig, steps: int, warmup: int) -> tuple[float, float]:
    """Images per wall and CPU second of LightningFloor under `Trainer(barebones=True)` (no
    logging, checkpointing, progress bar, summary or profiler): Lightning's own floor."""
    encoder, decoder, make_optimizer, batches = raw_parts(cfg)
    module = LightningFloor(encoder, decoder, make_optimizer)
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # not barebones mode's ten-line banner every repeat
    try:
        trainer = L.Trainer(barebones=True, accelerator="cpu", devices=1,
                            max_steps=warmup + steps, callbacks=[StepTimer()],
                            default_root_dir=cfg.paths.output_dir)
        return timed(lambda: trainer.fit(module, batches), cfg, steps, warmup)
    finally:
        lightning_log.setLevel(level)


def wall(runs: list[tuple[float, float]]) -> list[float]:
    """The images per wall second of each run of a side."""
    return [run[0] for run in runs]


def cpu(runs: list[tuple[float, float]]) -> list[float]:
    """The images per CPU second of each run of a side."""
    return [run[1] for run in runs]


def median_ratio(a: list[float], b: list[float]) -> float:
    """The median of the repeats' ratios a / b (each pair from the same repeat)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


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
                        help="also profile one run of (a) and of (c): own time by part of the "
                        "stack")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--override", nargs="*", default=[],
                        help="config overrides for every side, e.g. data.val_size=1000")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, lightning {L.__version__}, "
          f"{torch.get_num_threads()} threads, CPU; {load()}")

    rows, peak_rss_mb = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            a, b, c = [], [], []
            for r in range(args.repeats):
                cfg = compose(experiment, args.steps, args.warmup,
                              Path(tmp) / f"{experiment}{r}", args.override)
                check_within_one_epoch(cfg, args.steps + args.warmup)
                a.append(run_vaelab(cfg, args.steps, args.warmup))
                if peak_rss_mb is None:  # before any raw loop ran: the peak of (a) alone
                    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                b.append(run_raw(cfg, args.steps, args.warmup))
                c.append(run_lightning_floor(cfg, args.steps, args.warmup))
                print(f"{experiment} repeat {r}: vaelab {a[-1][0]:.0f} img/s "
                      f"({a[-1][1]:.0f} per CPU s), raw {b[-1][0]:.0f} img/s "
                      f"({b[-1][1]:.0f} per CPU s), bare Lightning {c[-1][0]:.0f} img/s "
                      f"({c[-1][1]:.0f} per CPU s)", flush=True)
            rows.append((experiment, cfg.data.batch_size, a, b, c))
            if args.profile:
                for side, run in (("vaelab", run_vaelab), ("bare Lightning", run_lightning_floor)):
                    profile_side(side, run, compose(experiment, args.steps, args.warmup,
                                                    Path(tmp) / f"{experiment}_profile",
                                                    args.override),
                                 args.steps, args.warmup, args.top)

    print(f"\n{args.steps} timed steps after {args.warmup} warm-up, batch size from the "
          f"experiment config, {args.repeats} alternating (a, b, c) repeats; img/s: median; "
          "ratio: median of the repeats' ratios")
    print(f"{'experiment':<12} {'vaelab img/s':>13} {'raw img/s':>10} {'ratio':>6}   "
          f"{'vaelab img/CPU-s':>16} {'raw img/CPU-s':>14} {'ratio':>6}")
    for experiment, _, runs_a, runs_b, _ in rows:
        a, b, a_cpu, b_cpu = wall(runs_a), wall(runs_b), cpu(runs_a), cpu(runs_b)
        print(f"{experiment:<12} {statistics.median(a):>13.0f} {statistics.median(b):>10.0f} "
              f"{median_ratio(a, b):>6.3f}   {statistics.median(a_cpu):>16.0f} "
              f"{statistics.median(b_cpu):>14.0f} {median_ratio(a_cpu, b_cpu):>6.3f}")
    print("\nLightning's own floor, (c) a bare LightningModule with the raw loop's step under "
          "Trainer(barebones=True):\nLightning/raw is the best ratio a Lightning-based (a) can "
          "reach; vaelab/Lightning is what vaelab adds (wall time)")
    print(f"{'experiment':<12} {'Lightning img/s':>16} {'Lightning/raw':>14} "
          f"{'vaelab/Lightning':>17} {'ms/step over raw: Lightning':>28} {'vaelab':>7}")
    for experiment, batch, *sides in rows:
        a, b, c = map(wall, sides)
        raw_step_ms = 1000 * batch / statistics.median(b)
        over = [raw_step_ms * (1 / median_ratio(side, b) - 1) for side in (c, a)]
        print(f"{experiment:<12} {statistics.median(c):>16.0f} {median_ratio(c, b):>14.3f} "
              f"{median_ratio(a, c):>17.3f} {over[0]:>28.3f} {over[1]:>7.3f}")
    print(f"peak RSS of the process after the first vaelab run: {peak_rss_mb:.0f} MiB")
    print(f"at the end: {load()}")


if __name__ == "__main__":
    main()
