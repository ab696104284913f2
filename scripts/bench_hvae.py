"""Training speed of the convolutional hierarchy (experiment=cifar10_hvae): vaelab's Lightning run
against plain PyTorch loops over the same model, in one invocation.

Variants (--variants), each timed over the same steps after a warm-up, alternating so drifting
load hits all alike; the ratio is against the eager loop:
  vaelab           vaelab.train.train as configured (every default callback and logger, the
                   EMA and update skipping of the recipe; figures off), the data on the device
  vaelab_compiled  the same with model.ladder.compile=true (torch.compile of each residual cell)
  eager            a bare loop: the model's forward, loss = -ELBO, backward, optimiser step
  compile          that loop with forward and loss under torch.compile
  cudagraphs       that loop under torch.compile(mode="reduce-overhead"), i.e. CUDA graphs
--precision bf16-mixed runs every variant in bf16 autocast (Lightning's bf16-mixed).

    python scripts/bench_hvae.py --data-dir <folder with cifar-10-batches-py/>
    python scripts/bench_hvae.py --data-dir <...> --device cuda --precision bf16-mixed \\
        --variants vaelab vaelab_compiled eager compile cudagraphs
"""

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from bench_train import StepTimer, check_within_one_epoch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vaelab.configs import compose_config
from vaelab.train import train

VARIANTS = ("vaelab", "vaelab_compiled", "eager", "compile", "cudagraphs")


class SyncedStepTimer(StepTimer):
    """StepTimer that waits for the GPU's queued work at both ends of the timed steps."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _sync(pl_module.device)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        _sync(pl_module.device)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def compose(args, output_dir: Path, compiled: bool = False) -> DictConfig:
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    return compose_config("train", [
        "experiment=cifar10_hvae", f"data.data_dir={args.data_dir}",
        f"data.batch_size={args.batch_size}", f"+trainer.max_steps={args.warmup + args.steps}",
        f"trainer.accelerator={accelerator}", f"trainer.precision={args.precision}",
        f"data.on_device={str(args.device == 'cuda').lower()}", "test=false",
        "callbacks.latent_viz=null", "+callbacks.step_timer._target_=bench_hvae.SyncedStepTimer",
        f"model.ladder.compile={str(compiled).lower()}", *args.overrides], output_dir)


def run_vaelab(cfg: DictConfig, steps: int, warmup: int) -> float:
    """Images per second of vaelab.train.train over the timed steps."""
    StepTimer.warmup, StepTimer.elapsed = warmup, None
    train(cfg)
    if StepTimer.elapsed is None:
        raise RuntimeError("the timed steps did not run: lower --steps/--warmup")
    return steps * cfg.data.batch_size / StepTimer.elapsed[0]


def run_loop(cfg: DictConfig, steps: int, warmup: int, device: str, mode: str,
             backend: str) -> float:
    """Images per second of a bare loop over the same model, optimiser, batch size and data:
    eager, or with forward and loss compiled (mode "compile"; "cudagraphs": reduce-overhead)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model).to(device).train()
    optimizer = model.optimizer(params=model.parameters())
    images = datamodule.images("train").to(device)
    bf16 = cfg.trainer.precision == "bf16-mixed"

    def negative_elbo(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(torch.device(device).type, torch.bfloat16) if bf16 else nullcontext():
            out = model(x)
            return (out["recon"] + out["kl"]).mean()

    if mode != "eager":
        negative_elbo = torch.compile(negative_elbo, backend=backend,
                                      mode="reduce-overhead" if mode == "cudagraphs" else None)
    batch, per_epoch = cfg.data.batch_size, len(images) // cfg.data.batch_size
    order = torch.randperm(len(images), device=device)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        i = step % per_epoch
        x = datamodule.model_input(images[order[i * batch:(i + 1) * batch]], train=True)
        loss = negative_elbo(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="holds cifar-10-batches-py/")
    parser.add_argument("--variants", nargs="+", default=["vaelab", "eager"], choices=VARIANTS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the variants")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compiled loops (eager: trace only, "
                        "for a quick check of the code path)")
    parser.add_argument("overrides", nargs="*", help="config overrides for both sides, "
                        "e.g. model.ladder.width=48")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "cudagraphs" in args.variants and args.device != "cuda":
        raise SystemExit("--variants cudagraphs needs --device cuda")
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, lightning {L.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else
             f", {torch.get_num_threads()} threads") + f", precision {args.precision}")

    speeds: dict[str, list[float]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for variant in args.variants:
                cfg = compose(args, Path(tmp) / f"{variant}{r}", variant == "vaelab_compiled")
                check_within_one_epoch(cfg, args.steps + args.warmup)
                if variant.startswith("vaelab"):
                    speed = run_vaelab(cfg, args.steps, args.warmup)
                else:
                    speed = run_loop(cfg, args.steps, args.warmup, args.device, variant,
                                     args.compile_backend)
                speeds[variant].append(speed)
                print(f"repeat {r} {variant}: {speed:.1f} img/s", flush=True)

    base = statistics.median(speeds["eager"]) if "eager" in speeds else None
    print(f"\n{args.steps} timed steps after {args.warmup}, batch {args.batch_size}, "
          f"{args.repeats} round(s); img/s: median")
    print(f"{'variant':<16} {'img/s':>9} {'vs eager':>9}")
    for variant, values in speeds.items():
        median = statistics.median(values)
        ratio = f"{median / base:9.3f}" if base else f"{'-':>9}"
        print(f"{variant:<16} {median:>9.1f} {ratio}")


if __name__ == "__main__":
    main()
