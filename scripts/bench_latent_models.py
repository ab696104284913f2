"""Per-step training cost of each prior and posterior, as a ratio to the standard VAE, in one run;
and the IAF posterior built on Pyro's transforms against the same flow built on zuko's.

Every variant is Burda et al.'s MLP (784-200-200-50, tanh; experiment=burda_vae) with one latent
component swapped, trained with Adam on batches of `--batch-size` dynamically binarised MNIST
images (real MNIST from VAELAB_DATA_DIR if set, else random binary images of that size: the
cost does not depend on the pixels). Variants run in rounds (all once, then all again, ...), so
load that drifts during the run touches each alike; the median over rounds is reported.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_latent_models.py --steps 100 --rounds 5
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time

import torch
from hydra.utils import instantiate

from vaelab.configs import compose_config

VARIANTS = {
    "standard": [],
    "mixture_of_gaussians": ["model/prior=mixture_of_gaussians"],
    "vamp": ["model/prior=vamp"],
    "flow_prior": ["model/prior=flow"],
    "iaf": ["model/posterior=iaf"],
    "vamp+iaf": ["model/prior=vamp", "model/posterior=iaf"],
}


def images(batch_size: int) -> torch.Tensor:
    """Grey levels in [0, 1], [N, 1, 28, 28]: MNIST's training images if VAELAB_DATA_DIR holds
    them, else uniform noise."""
    if os.environ.get("VAELAB_DATA_DIR"):
        from torchvision.datasets import MNIST

        data = MNIST(os.environ["VAELAB_DATA_DIR"], train=True, download=False).data
        return data[:20 * batch_size].unsqueeze(1).float() / 255
    return torch.rand(20 * batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def build(overrides: list[str], output_dir: str):
    cfg = compose_config("train", ["experiment=burda_vae", *overrides], output_dir)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    return model, model.optimizer(params=model.parameters())


def seconds_per_step(model, optimizer, x: torch.Tensor, steps: int, batch: int) -> float:
    """Wall seconds per optimiser step (loss, backward, Adam) over `steps` steps."""
    labels = torch.zeros(batch, dtype=torch.long)
    start = time.perf_counter()
    for step in range(steps):
        chunk = x[(step * batch) % len(x):][:batch]
        loss = model.training_step((torch.bernoulli(chunk), labels), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def zuko_iaf(model, steps: int = 2, hidden=(320, 320)):
    """The same IAF posterior (2 affine autoregressive steps over z with the context h(x),
    orders alternating) from zuko's MaskedAutoregressiveTransform: each step's one-pass
    direction is used to sample, log q from its log-determinant."""
    import zuko
    from torch import nn

    from vaelab.models.distributions import FlowPosterior
    from vaelab.models.posteriors import Posterior

    d = model.latent_dim

    class ZukoFlowPosterior(FlowPosterior):
        # zuko's log_abs_det_jacobian re-runs the MADE: its call_and_ladj runs it once
        def rsample_and_log_prob(self, sample_shape=(), generator=None):
            z = self.base_dist.rsample(sample_shape, generator)
            log_q = self.base_dist.log_prob(z)
            for transform in self.transforms:
                z, ladj = transform.call_and_ladj(z)
                log_q = log_q - ladj
            self._last = (z, log_q)
            return z, log_q

    class ZukoIAF(Posterior):
        def __init__(self):
            super().__init__(d)
            self.steps = nn.ModuleList(zuko.flows.MaskedAutoregressiveTransform(
                d, d, hidden_features=hidden,
                order=torch.arange(d) if t % 2 == 0 else torch.arange(d).flip(0))
                for t in range(steps))

        def forward(self, features):
            context = features[:, 2 * d:]
            return ZukoFlowPosterior(self.base(features), [s(context) for s in self.steps])

    return ZukoIAF()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"batch {args.batch_size}, {'MNIST' if os.environ.get('VAELAB_DATA_DIR') else 'noise'}")
    x = images(args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: build(VARIANTS[name], tmp) for name in args.variants}
        try:
            iaf_model, _ = build(VARIANTS["iaf"], tmp)
            iaf_model.posterior_family = zuko_iaf(iaf_model)
            runs["iaf (zuko)"] = (iaf_model, torch.optim.Adam(iaf_model.parameters(), lr=1e-3))
        except ImportError:
            print("zuko is not installed: the library comparison is left out "
                  "(pip install zuko to include it)")
    times = {name: [] for name in runs}
    for model, optimizer in runs.values():
        seconds_per_step(model, optimizer, x, args.warmup, args.batch_size)
    for r in range(args.rounds):
        for name, (model, optimizer) in runs.items():
            times[name].append(seconds_per_step(model, optimizer, x, args.steps,
                                                args.batch_size))
        print(f"round {r + 1}: " + ", ".join(f"{n} {1000 * t[-1]:.1f} ms"
                                             for n, t in times.items()), flush=True)
    base = statistics.median(times["standard"]) if "standard" in times else None
    print(f"\n{'variant':<22} {'ms/step':>8} {'ratio to standard':>18}   (median of "
          f"{args.rounds} rounds of {args.steps} steps)")
    for name, t in times.items():
        ratio = f"{statistics.median(t) / base:>18.2f}" if base else ""
        print(f"{name:<22} {1000 * statistics.median(t):>8.2f} {ratio}")


if __name__ == "__main__":
    main()
