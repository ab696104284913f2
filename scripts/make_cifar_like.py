"""A CIFAR-10-format data set made of real MNIST digits, coloured, for trying the CIFAR recipe.

Each 32x32 RGB image is an MNIST digit (28x28, padded at a random offset) in one colour over a
smooth background of random colours, plus Gaussian pixel noise (std --noise levels, 3: an
entropy of 3.64 bits/dim that no model can code below); one of the two is light and the other
dark, so the digit stays visible. The class is the digit. The files are CIFAR-10's python
version, pickled as Python 2 wrote the real ones, so `data=cifar10` reads them unchanged:

    python scripts/make_cifar_like.py --mnist <folder holding MNIST/raw/> --out /tmp/cifar_like
    vaelab-train experiment=cifar10_vae data.data_dir=/tmp/cifar_like

--png-dir also writes the first --png-count training images as <png-dir>/<class>/<i>.png, a
folder for `data=image_folder`.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vaelab.data.cifar10 import cifar_file_bytes
from vaelab.data.mnist import load_idx_split

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_BATCHES = 5
SIZE = 32


def write_pickle(path: Path, entry: dict) -> None:
    path.write_bytes(cifar_file_bytes(entry))


def smooth_field(n: int, grid: int, low: torch.Tensor, high: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
    """Random colours in [low, high] ([n, 1, 1, 1] each) on a grid x grid lattice, bilinearly
    upsampled: [n, 3, 32, 32] floats."""
    corners = low + (high - low) * torch.rand(n, 3, grid, grid, generator=gen)
    return F.interpolate(corners, size=(SIZE, SIZE), mode="bilinear", align_corners=True)


def colourise(digits: torch.Tensor, gen: torch.Generator, noise: float) -> torch.Tensor:
    """uint8 digits [N, 1, 28, 28] -> uint8 RGB images [N, 3, 32, 32]."""
    n, pad = len(digits), SIZE - digits.shape[-1]
    # Half the images get a light digit on a dark background, half the reverse.
    # Light colours are drawn from [145, 255] per channel, dark ones from [0, 110].
    light = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    fg_low, bg_low = torch.where(light, 145.0, 0.0), torch.where(light, 0.0, 145.0)
    background = smooth_field(n, 3, bg_low, bg_low + 110, gen)
    colour = fg_low + 110 * torch.rand(n, 3, 1, 1, generator=gen)
    alpha = torch.zeros(n, 1, SIZE, SIZE)
    dy, dx = torch.randint(0, pad + 1, (2, n), generator=gen).tolist()
    for i, (y, x) in enumerate(zip(dy, dx)):
        alpha[i, :, y:y + 28, x:x + 28] = digits[i].float() / 255
    image = alpha * colour + (1 - alpha) * background
    image = image + noise * torch.randn(image.shape, generator=gen)
    return image.round().clamp(0, 255).to(torch.uint8)


def batch_entry(label: str, images: torch.Tensor, labels: torch.Tensor, offset: int) -> dict:
    """A CIFAR batch dict: rows of 1024 red, 1024 green, 1024 blue values (row-major planes)."""
    return {b"batch_label": label.encode(), b"labels": labels.tolist(),
            b"data": images.reshape(len(images), -1).numpy(),
            b"filenames": [f"{CLASS_NAMES[y]}_{offset + i:05d}.png".encode()
                           for i, y in enumerate(labels.tolist())]}


def make_split(mnist_dir: str, split: str, size: int, gen: torch.Generator, noise: float):
    digits, labels = load_idx_split(mnist_dir, split)
    if size > len(digits):
        raise SystemExit(f"--{split}-size {size}: MNIST's {split} split has only {len(digits)}")
    pick = torch.randperm(len(digits), generator=gen)[:size]
    return colourise(digits[pick], gen, noise), labels[pick]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist", required=True, help="folder that holds MNIST/raw/ (IDX files)")
    parser.add_argument("--out", required=True, help="writes <out>/cifar-10-batches-py/")
    parser.add_argument("--train-size", type=int, default=50000, help="from MNIST's train split")
    parser.add_argument("--test-size", type=int, default=10000, help="from MNIST's test split")
    parser.add_argument("--noise", type=float, default=3.0, help="pixel noise std, 8-bit levels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png-dir", help="also write training images as <png-dir>/<class>/*.png")
    parser.add_argument("--png-count", type=int, default=2000)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    images, labels = make_split(args.mnist, "train", args.train_size, gen, args.noise)
    folder = Path(args.out) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    starts = np.linspace(0, len(images), TRAIN_BATCHES + 1).astype(int)
    for b, (lo, hi) in enumerate(zip(starts[:-1], starts[1:]), start=1):
        write_pickle(folder / f"data_batch_{b}", batch_entry(
            f"training batch {b} of {TRAIN_BATCHES}", images[lo:hi], labels[lo:hi], lo))
    test_images, test_labels = make_split(args.mnist, "test", args.test_size, gen, args.noise)
    write_pickle(folder / "test_batch",
                 batch_entry("testing batch 1 of 1", test_images, test_labels, 0))
    write_pickle(folder / "batches.meta", {
        b"num_cases_per_batch": int(starts[1]), b"num_vis": 3 * SIZE * SIZE,
        b"label_names": [name.encode() for name in CLASS_NAMES]})
    print(f"{folder}: {len(images)} train, {len(test_images)} test images")

    if args.png_dir:
        for i, (image, y) in enumerate(zip(images[:args.png_count], labels.tolist())):
            path = Path(args.png_dir) / CLASS_NAMES[y] / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        print(f"{args.png_dir}: {min(args.png_count, len(images))} PNG files in class folders")


if __name__ == "__main__":
    main()
