"""MNIST from torchvision's on-disk layout (<data_dir>/MNIST/raw/*-ubyte), held in memory."""

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info

from vaelab.data.idx import read_idx
from vaelab.data.in_memory import InMemoryDataModule

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def mnist_raw_dir(data_dir: str | Path) -> Path:
    """Where torchvision keeps the MNIST IDX files under `data_dir`."""
    return Path(data_dir).expanduser() / "MNIST" / "raw"


def _find(raw_dir: Path, name: str) -> Path | None:
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_mnist_split(data_dir: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train" (60k) or "test" (10k) split: (uint8 [N, 1, 28, 28], int64 [N])."""
    raw_dir = mnist_raw_dir(data_dir)
    fix = (f"Delete it and set data.download=true, or copy a good copy into {raw_dir}.")
    paths = [_find(raw_dir, name) for name in FILES[split]]
    if None in paths:
        missing = [n for n, p in zip(FILES[split], paths) if p is None]
        raise FileNotFoundError(
            f"MNIST files missing in {raw_dir}: {', '.join(missing)} (expected "
            f"{', '.join(n for pair in FILES.values() for n in pair)}, optionally .gz). "
            "Set data.download=true to fetch them with torchvision, or point data.data_dir "
            "(or the VAELAB_DATA_DIR environment variable) at the folder that holds MNIST/raw/."
        )
    images = read_idx(paths[0], expected_ndim=3, fix=fix)
    labels = read_idx(paths[1], expected_ndim=1, fix=fix)
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels. {fix}"
        )
    return images.unsqueeze(1), labels.long()


def download_mnist(data_dir: str | Path) -> None:
    """Fetch MNIST with torchvision into <data_dir>/MNIST/raw, with a clear error offline."""
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(root=str(Path(data_dir).expanduser()), train=train, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
        raise RuntimeError(
            f"downloading MNIST into {mnist_raw_dir(data_dir)} failed ({err}). Without network "
            "access, copy the four IDX files there by hand and set data.download=false."
        ) from err


class MNISTDataModule(InMemoryDataModule):
    """MNIST: train/val split of the 60k training images (fixed seed) and the official 10k test."""

    def __init__(self, data_dir: str, download: bool = False, val_size: int = 5000,
                 split_seed: int = 12345, image_shape: Sequence[int] = (1, 28, 28),
                 num_classes: int = 10, **kwargs):
        super().__init__(image_shape=image_shape, num_classes=num_classes, **kwargs)
        self.data_dir = data_dir
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed

    def prepare_data(self) -> None:
        # Lightning calls prepare_data on one process only, so downloads never race.
        if self.download and not all(
            _find(mnist_raw_dir(self.data_dir), n) for pair in FILES.values() for n in pair
        ):
            download_mnist(self.data_dir)

    def load_splits(self):
        images, labels = load_mnist_split(self.data_dir, "train")
        if not 0 < self.val_size < len(images):
            raise ValueError(
                f"data.val_size={self.val_size} must be between 1 and {len(images) - 1} "
                f"(the training file has {len(images)} images)"
            )
        g = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(images), generator=g)
        val, train = order[: self.val_size], order[self.val_size:]
        rank_zero_info(f"MNIST from {mnist_raw_dir(self.data_dir)}: "
                       f"{len(train)} train, {len(val)} val")
        return {
            "train": (images[train], labels[train]),
            "val": (images[val], labels[val]),
            "test": load_mnist_split(self.data_dir, "test"),
        }
