"""The data path alone: vaelab's in-memory MNIST batches vs torchvision's per-item DataLoader.

Both read the same IDX files and deliver the same thing per step: a [B, 1, 28, 28] float batch
in [0, 1], dynamically binarised. vaelab slices a uint8 tensor and converts the whole batch;
torchvision decodes each item to PIL, applies ToTensor and collates. Loading the files and
building the datasets is not timed.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_data.py
"""

import argparse
import os
import shlex
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from vaelab.data import MNISTDataModule


def images_per_second(batches, convert, num_batches: int) -> float:
    """Images/s over the first `num_batches` batches of an iterable."""
    seen, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(batches):
        if i == num_batches:
            break
        seen += len(convert(images))
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR", "data"),
                        help="folder with MNIST/raw (default: $VAELAB_DATA_DIR)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300, help="batches timed per run")
    parser.add_argument("--workers", type=int, default=0,
                        help="torchvision DataLoader num_workers (0 is its default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))

    dm = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size,
                         binarize="dynamic")
    dm.setup("fit")
    tv = MNIST(args.data_dir, train=True, transform=ToTensor())
    loader = DataLoader(tv, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers)

    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(images_per_second(dm.train_dataloader(),
                                      lambda u8: dm.to_float(u8, train=True), args.batches))
        theirs.append(images_per_second(loader, torch.bernoulli, args.batches))
        print(f"repeat {r}: vaelab {ours[-1]:.0f} img/s, torchvision {theirs[-1]:.0f} img/s",
              flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\n{args.batches} batches of {args.batch_size}, median of {args.repeats}")
    print(f"vaelab in-memory uint8 batches : {a:>10.0f} img/s")
    print(f"torchvision DataLoader ({args.workers} workers): {b:>10.0f} img/s")
    print(f"ratio vaelab / torchvision     : {a / b:>10.1f}")


if __name__ == "__main__":
    main()
