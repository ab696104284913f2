"""MNIST and Fashion-MNIST from torchvision's on-disk layout, held in memory.

Both are four IDX files, <data_dir>/<MNIST|FashionMNIST>/raw/{train,t10k}-{images-idx3,
labels-idx1}-ubyte (optionally .gz): one DataModule, parameterised by the torchvision dataset.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.datasets

from vaelab.data.idx import read_idx
from vaelab.data.in_memory import OfficialSplitDataModule

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def raw_dir(data_dir: str | Path, dataset: str = "MNIST") -> Path:
    """Where torchvision keeps `dataset`'s IDX files under `data_dir`."""
    return Path(data_dir).expanduser() / dataset / "raw"


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_split(data_dir: str | Path, split: str,
                   dataset: str = "MNIST") -> tuple[torch.Tensor, torch.Tensor]:
    """The official "train" or "test" split: (uint8 [N, 1, 28, 28], int64 [N])."""
    raw = raw_dir(data_dir, dataset)
    fix = f"Delete it and set data.download=true, or copy a good copy into {raw}."
    paths = [_find(raw, name) for name in FILES[split]]
    if None in paths:
        missing = [n for n, p in zip(FILES[split], paths) if p is None]
        raise FileNotFoundError(
            f"{dataset} files missing in {raw}: {', '.join(missing)} (expected "
            f"{', '.join(n for pair in FILES.values() for n in pair)}, optionally .gz). "
            "Set data.download=true to fetch them with torchvision, or point data.data_dir (or "
            f"the VAELAB_DATA_DIR environment variable) at the folder that holds {dataset}/raw/."
        )
    images = read_idx(paths[0], expected_ndim=3, fix=fix)
    labels = read_idx(paths[1], expected_ndim=1, fix=fix)
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels. {fix}"
        )
    return images.unsqueeze(1), labels.long()


def download(data_dir: str | Path, dataset: str = "MNIST") -> None:
    """Fetch `dataset` with torchvision into <data_dir>/<dataset>/raw; a clear error offline."""
    cls = getattr(torchvision.datasets, dataset)
    try:
        for train in (True, False):
            cls(root=str(Path(data_dir).expanduser()), train=train, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
        raise RuntimeError(
            f"downloading {dataset} into {raw_dir(data_dir, dataset)} failed ({err}). Without "
            "network access, copy the four IDX files there by hand and set data.download=false."
        ) from err


class MNISTDataModule(OfficialSplitDataModule):
    """MNIST: train/val split of the 60k training images (fixed seed) and the official 10k test."""

    #: torchvision's dataset class, also the folder under data_dir
    dataset = "MNIST"

    def __init__(self, data_dir: str, image_shape: Sequence[int] = (1, 28, 28), **kwargs):
        super().__init__(data_dir, image_shape, **kwargs)
        self.title = self.dataset

    def files_present(self) -> bool:
        raw = raw_dir(self.data_dir, self.dataset)
        return all(_find(raw, name) for pair in FILES.values() for name in pair)

    def fetch(self) -> None:
        download(self.data_dir, self.dataset)

    def read_train_test(self):
        return (load_idx_split(self.data_dir, "train", self.dataset),
                load_idx_split(self.data_dir, "test", self.dataset))


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando's 28x28 clothing, same files and splits as MNIST), named classes."""

    dataset = "FashionMNIST"

    @property
    def class_names(self) -> list[str]:
        """The class names in label order: T-shirt/top, Trouser, ... (torchvision's list)."""
        return list(torchvision.datasets.FashionMNIST.classes)
