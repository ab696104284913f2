"""The data path alone: vaelab's uint8 batches vs torch's and torchvision's DataLoaders.

--part mnist: both read the same IDX files and deliver, per step, a [B, 1, 28, 28] float batch
in [0, 1], dynamically binarised. vaelab slices a uint8 tensor and converts the whole batch;
torchvision decodes each item to PIL, applies ToTensor and collates. Loading the files and
building the datasets is not timed.

--part loader: the same in-memory uint8 MNIST training split, shuffled batches, converted to
floats and dynamically binarised (model_input) each step: vaelab's TensorBatchLoader vs a torch
DataLoader(dataset, batch_size, sampler=RandomSampler, collate_fn) over a Dataset whose
`__getitems__(indices)` slices the uint8 tensors, with 0 and --loader-workers worker processes.
Alternating repeats, median reported.

--part folder: a folder of JPEGs (synthetic, or --folder). Times the image cache's build
(decode, centre crop, resize) with 1 and with --decode-workers threads, then epochs of float
batches: vaelab's memory-mapped cache (loader + model_input) vs torchvision's ImageFolder +
DataLoader (CenterCrop, Resize, ToTensor per item, --workers processes, persistent, after a
warm-up epoch), both giving [B, 3, S, S] floats in [0, 1] with the same pixels.

    VAELAB_DATA_DIR=/path/to/data python scripts/bench_data.py
    VAELAB_DATA_DIR=/path/to/data python scripts/bench_data.py --part loader
    python scripts/bench_data.py --part folder --images 5000 --workers 2 --decode-workers 2
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms
from torchvision.datasets import MNIST, ImageFolder

from vaelab.data import ImageFolderDataModule, MNISTDataModule, TensorBatchLoader
from vaelab.data.image_decoder import ImageDecoder
from vaelab.data.image_files import list_images


def images_per_second(batches, convert, num_batches: int | None = None) -> float:
    """Images/s over the first `num_batches` batches of an iterable (all when None)."""
    seen, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(batches):
        if i == num_batches:
            break
        seen += len(convert(images))
    return seen / (time.perf_counter() - start)


def bench_mnist(args) -> None:
    dm = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size,
                         binarize="dynamic")
    dm.setup("fit")
    tv = MNIST(args.data_dir, train=True, transform=transforms.ToTensor())
    loader = DataLoader(tv, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers)

    ours, theirs = [], []
    for r in range(args.repeats):
        ours.append(images_per_second(dm.train_dataloader(),
                                      lambda u8: dm.model_input(u8, train=True), args.batches))
        theirs.append(images_per_second(loader, torch.bernoulli, args.batches))
        print(f"repeat {r}: vaelab {ours[-1]:.0f} img/s, torchvision {theirs[-1]:.0f} img/s",
              flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\nMNIST: {args.batches} batches of {args.batch_size}, median of {args.repeats}")
    print(f"vaelab in-memory uint8 batches : {a:>10.0f} img/s")
    print(f"torchvision DataLoader ({args.workers} workers): {b:>10.0f} img/s")
    print(f"ratio vaelab / torchvision     : {a / b:>10.1f}")


class SlicedDataset(Dataset):
    """In-memory uint8 images and labels, fetched a whole batch at a time by slicing."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 [B, C, H, W], labels [B]): what DataLoader's fetcher asks for per batch."""
        idx = torch.tensor(indices)
        return self.images[idx], self.labels[idx]


def batch_as_is(batch):
    """collate_fn: __getitems__ already returns the batch (the default would re-collate it)."""
    return batch


def bench_loader(args) -> None:
    dm = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size,
                         binarize="dynamic")
    images, labels = dm.images("train"), dm.labels("train")
    dataset = SlicedDataset(images, labels)
    loaders = {"TensorBatchLoader": TensorBatchLoader(images, labels, args.batch_size,
                                                      shuffle=True, same_steps=True)}
    for workers in dict.fromkeys([0, *args.loader_workers]):
        loaders[f"DataLoader, {workers} workers"] = DataLoader(
            dataset, batch_size=args.batch_size, sampler=RandomSampler(dataset),
            collate_fn=batch_as_is, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0)

    def convert(u8: torch.Tensor) -> torch.Tensor:
        return dm.model_input(u8, train=True)

    for loader in loaders.values():  # warm-up: worker start, first touch of the pages
        images_per_second(loader, convert, 20)
    rates = {name: [] for name in loaders}
    for r in range(args.repeats):
        for name, loader in loaders.items():
            rates[name].append(images_per_second(loader, convert, args.batches))
        print(f"repeat {r}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in rates.items())
              + " img/s", flush=True)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    base = medians["TensorBatchLoader"]
    print(f"\nin-memory MNIST train ({len(images)} images): {args.batches} shuffled batches of "
          f"{args.batch_size} + float conversion + dynamic binarisation, median of "
          f"{args.repeats}, torch threads {torch.get_num_threads()}")
    for name, rate in medians.items():
        print(f"{name:<24}: {rate:>9.0f} img/s   ratio to TensorBatchLoader {rate / base:5.2f}")


def write_jpegs(root: Path, n: int, width: int, height: int, classes: int = 10) -> None:
    """n smooth random RGB JPEGs (width x height), spread over `classes` class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)


def time_cache_build(dm: ImageFolderDataModule, workers: int, cache_dir: Path) -> float:
    """Images/s of decoding every file of the folder into a fresh cache with `workers` threads."""
    paths = list_images(dm.data_dir)
    decoder = ImageDecoder(dm.preprocess, cache_dir, workers)
    start = time.perf_counter()
    decoder.load("all", paths, dm.data_dir)
    return len(paths) / (time.perf_counter() - start)


def bench_folder(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.folder) if args.folder else Path(tmp) / "images"
        if not args.folder:
            print(f"writing {args.images} JPEGs of {args.source_width}x{args.source_height} ...",
                  flush=True)
            write_jpegs(root, args.images, args.source_width, args.source_height)
        size = args.image_size
        dm = ImageFolderDataModule(
            data_dir=str(root), image_shape=(3, size, size), crop_size="square",
            resample="bicubic", val_size=0.01, test_size=0.01,
            batch_size=args.batch_size, cache_dir=str(Path(tmp) / "cache"))
        n = len(list_images(root))

        build = {w: time_cache_build(dm, w, Path(tmp) / f"build_{w}")
                 for w in dict.fromkeys([1, args.decode_workers])}
        dm.prepare_data()
        dm.setup("fit")

        def crop_square(image: Image.Image) -> Image.Image:
            return transforms.functional.center_crop(image, min(image.size))

        tv = ImageFolder(str(root), transform=transforms.Compose([
            transforms.Lambda(crop_square),
            transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor()]))
        loader = DataLoader(tv, batch_size=args.batch_size, shuffle=True, drop_last=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
        first = tv.transform(tv.loader(str(dm.files("train")[0])))
        same = (dm.model_input(dm.images("train")[:1])[0] - first).abs().max()

        images_per_second(loader, lambda x: x)  # warm-up: worker start, page cache
        ours, theirs = [], []
        for r in range(args.repeats):
            ours.append(images_per_second(dm.train_dataloader(), dm.model_input))
            theirs.append(images_per_second(loader, lambda x: x))
            print(f"epoch {r}: vaelab {ours[-1]:.0f} img/s, torchvision {theirs[-1]:.0f} img/s",
                  flush=True)

    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"\nimage folder: {n} images -> 3x{size}x{size}, batches of {args.batch_size}, "
          f"median of {args.repeats} epochs; largest pixel difference of the two pipelines "
          f"on one image: {same:.4f}")
    for w, rate in build.items():
        print(f"cache build, {w} decode thread(s)  : {rate:>10.0f} img/s")
    if len(build) > 1:
        print(f"ratio {args.decode_workers} threads / 1 thread        : "
              f"{build[args.decode_workers] / build[1]:>10.2f}")
    print(f"vaelab cached uint8 batches      : {a:>10.0f} img/s")
    print(f"torchvision ImageFolder ({args.workers} workers): {b:>10.0f} img/s")
    print(f"ratio vaelab / torchvision       : {a / b:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["mnist", "loader", "folder", "all"],
                        default="mnist")
    parser.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR", "data"),
                        help="folder with MNIST/raw (default: $VAELAB_DATA_DIR)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300, help="MNIST: batches timed per run")
    parser.add_argument("--workers", type=int, default=None,
                        help="torchvision DataLoader num_workers (default: 0 for MNIST, the "
                             "number of cores for the folder)")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[2],
                        help="loader: DataLoader num_workers tried besides 0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--folder", help="folder: a real folder of class subfolders of images "
                                         "instead of synthetic JPEGs")
    parser.add_argument("--images", type=int, default=5000, help="folder: synthetic JPEGs")
    parser.add_argument("--source-width", type=int, default=80)
    parser.add_argument("--source-height", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32, help="folder: output S x S")
    parser.add_argument("--decode-workers", type=int, default=os.cpu_count(),
                        help="folder: cache build threads compared with 1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    if args.part in ("mnist", "all"):
        bench_mnist(argparse.Namespace(**{**vars(args), "workers": args.workers or 0}))
    if args.part in ("loader", "all"):
        bench_loader(args)
    if args.part in ("folder", "all"):
        workers = os.cpu_count() if args.workers is None else args.workers
        bench_folder(argparse.Namespace(**{**vars(args), "workers": workers}))


if __name__ == "__main__":
    main()
