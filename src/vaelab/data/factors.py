"""Data whose labels are ground-truth factor classes [N, K]: one set of images that is a grid of
factor combinations (dSprites, 3dshapes, vaelab's rendered sprites) or a subsample of it."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.nn import functional as F

from vaelab.data.cache import cache_folder
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.splits import check_split_size, held_out_splits


class FactorFileError(ValueError):
    """A dataset file is unreadable or not in the format its reader expects."""


@dataclass
class FactorData:
    """Every image of a factor dataset with its factor classes, before the train/val/test split."""

    images: torch.Tensor  #: uint8 [N, C, H, W] (may be memory-mapped)
    factors: torch.Tensor  #: int64 [N, K] class of each factor, 0..size-1
    names: list[str]  #: the K factor names
    #: names of a factor's classes (e.g. shape: square, ellipse, heart); others use "0", "1", ...
    value_names: dict[str, list[str]] = field(default_factory=dict)


def factor_names_for(known: Sequence[str], k: int) -> list[str]:
    """`known` when there are len(known) factor columns, else factor_0, ..., factor_{k-1}."""
    return list(known) if k == len(known) else [f"factor_{i}" for i in range(k)]


def drop_constant_factors(data: FactorData) -> FactorData:
    """Without the factors that take one value (dSprites' colour): they are not factors."""
    varying = [k for k in range(len(data.names))
               if data.factors[:, k].min() < data.factors[:, k].max()]
    names = [data.names[k] for k in varying]
    return FactorData(data.images, data.factors[:, varying], names,
                      {n: v for n, v in data.value_names.items() if n in names})


def mixed_radix_strides(sizes: Sequence[int]) -> torch.Tensor:
    """int64 [K]: the grid index of factor classes f is f @ strides (the last factor fastest)."""
    return torch.tensor([math.prod(sizes[k + 1:]) for k in range(len(sizes))], dtype=torch.long)


class FactorDataModule(InMemoryDataModule):
    """Base for data labelled with ground-truth factor classes [N, K] (`has_factors`).

    Subclasses implement `load_factor_data`. Factors that take one value are dropped; sizes are
    read from the data (max class + 1). All splits come from the one set of images: a random
    test and val set (`split_seed`) and the rest for training. `class_labels` picks
    `label_factor`; `attributes` names every factor class "<factor>:<value>" (e.g. shape:heart,
    which Hydra takes unquoted: `vaelab-attr attribute=shape:heart`).
    """

    def __init__(self, val_size: int | float, test_size: int | float, split_seed: int = 12345,
                 label_factor: str = "shape", image_shape: Sequence[int] = (1, 64, 64),
                 **kwargs):
        # num_classes (the label factor's size) is known once the data is read.
        super().__init__(image_shape=image_shape, num_classes=0, **kwargs)
        check_split_size("data.val_size", val_size)
        check_split_size("data.test_size", test_size)
        self.val_size = val_size
        self.test_size = test_size
        self.split_seed = split_seed
        self.label_factor = label_factor
        self._data: FactorData | None = None

    # -- for subclasses ------------------------------------------------------------------------
    def load_factor_data(self) -> FactorData:
        """All images with their factor classes; called once, by `setup`."""
        raise NotImplementedError

    # -- reading and splitting -----------------------------------------------------------------
    def load_splits(self):
        data = self.load_factor_data()
        n = len(data.images)
        if n == 0 or data.factors.dim() != 2 or len(data.factors) != n or data.factors.min() < 0:
            raise ValueError(f"need images and factor classes int64 [N, K] >= 0 for N >= 1, got "
                             f"{n} images and classes {tuple(data.factors.shape)}")
        data = drop_constant_factors(data)
        if self.label_factor not in data.names:
            raise ValueError(f"data.label_factor={self.label_factor!r} is not a factor of this "
                             f"data; choose one of {data.names}")
        self._data = data
        self._index_factors()
        self.num_classes = self._sizes[self._label_index]
        rows = held_out_splits(n, self.val_size, self.test_size, self.split_seed)
        rank_zero_info(f"{len(data.names)} factors {dict(zip(data.names, self._sizes))}: "
                       + ", ".join(f"{len(i)} {s}" for s, i in rows.items()) + " images")
        return {s: (data.images[i], data.factors[i]) for s, i in rows.items()}

    def _index_factors(self) -> None:
        """Sizes, the classes present, and how factor classes find their image's row."""
        factors = self._data.factors
        self._sizes = (factors.max(0).values + 1).tolist()
        self._values = [torch.unique(factors[:, k]) for k in range(factors.shape[1])]
        self._label_index = self._data.names.index(self.label_factor)
        self._strides = mixed_radix_strides(self._sizes)
        codes = factors @ self._strides
        # The complete grid in grid order (as the official files store it): the grid index is
        # the row. Otherwise, a sorted index of grid indices (a vectorised hash map).
        self._grid_order = len(codes) == math.prod(self._sizes) and torch.equal(
            codes, torch.arange(len(codes)))
        if not self._grid_order:
            self._sorted_codes, self._rows = codes.sort()
            repeated = (self._sorted_codes[1:] == self._sorted_codes[:-1]).nonzero()
            if len(repeated):
                row = self._rows[repeated[0, 0]]
                raise ValueError(f"two images have the factors {self._describe(factors[row])}: "
                                 "each combination of factor classes must appear once in the file")

    def _describe(self, factors: torch.Tensor) -> str:
        return ", ".join(f"{n}={self._value_names(k)[int(f)]}"
                         for k, (n, f) in enumerate(zip(self._data.names, factors)))

    def _value_names(self, k: int) -> list[str]:
        names = self._data.value_names.get(self._data.names[k], [])
        return [names[c] if c < len(names) else str(c) for c in range(self._sizes[k])]

    def _ready(self) -> FactorData:
        self.setup()
        return self._data

    # -- the factor surface --------------------------------------------------------------------
    @property
    def has_factors(self) -> bool:
        return True

    @property
    def is_complete_grid(self) -> bool:
        """Whether every combination of factor classes has its image (a subsampled file lacks
        some, which the sampling scores of vaelab-eval would ask for)."""
        self._ready()
        return len(self._data.factors) == math.prod(self._sizes)

    @property
    def factor_names(self) -> list[str]:
        """The K factor names, in label column order."""
        return list(self._ready().names)

    @property
    def factor_sizes(self) -> list[int]:
        """Classes per factor (max class + 1 in the data), in label column order."""
        self._ready()
        return list(self._sizes)

    def sample_factors(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """int64 [n, K]: each factor uniform over the classes the data has (on the complete grid,
        0..size-1; a factor with one class stays at it)."""
        self._ready()
        return torch.stack([values[torch.randint(len(values), (n,), generator=generator)]
                            for values in self._values], dim=1)

    def grid_index(self, factors: torch.Tensor) -> torch.Tensor:
        """Each combination's place in the full factor grid (the last factor fastest, as the
        official files order their rows): int64 [n, K] -> [n]."""
        self._ready()
        return factors.long().cpu() @ self._strides

    def grid_factors(self, index: torch.Tensor) -> torch.Tensor:
        """The inverse of grid_index: int64 [n] -> factor classes [n, K]."""
        self._ready()
        return index.long().cpu()[:, None] // self._strides % torch.tensor(self._sizes)

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """The images with the given factor classes, as stored (before any binarisation):
        int64 [n, K] -> uint8 [n, C, H, W], on the device of `factors`."""
        data = self._ready()
        device, factors = factors.device, factors.long().cpu()
        sizes = torch.tensor(self._sizes)
        if factors.dim() != 2 or factors.shape[1] != len(sizes):
            raise ValueError(f"factors must be [n, {len(sizes)}] ({self.factor_names}), got "
                             f"{tuple(factors.shape)}")
        if ((factors < 0) | (factors >= sizes)).any():
            raise ValueError(f"factor classes must lie in 0..size-1 with sizes {self._sizes}")
        codes = factors @ self._strides
        if self._grid_order:
            rows = codes
        else:
            at = torch.searchsorted(self._sorted_codes, codes).clamp(max=len(self._rows) - 1)
            missing = (self._sorted_codes[at] != codes).nonzero()
            if len(missing):
                raise KeyError(f"no image has the factors {self._describe(factors[missing[0, 0]])}"
                               ": this data is a subsample of the factor grid without that "
                               "combination")
            rows = self._rows[at]
        return data.images[rows].to(device)

    # -- classes and attributes ----------------------------------------------------------------
    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The `label_factor` column of factor labels: [B, K] -> [B]."""
        self._ready()
        return labels[:, self._label_index]

    @property
    def class_names(self) -> list[str]:
        """Names of the `label_factor` classes (e.g. square, ellipse, heart)."""
        self._ready()
        return self._value_names(self._label_index)

    @property
    def attribute_names(self) -> list[str]:
        """"<factor>:<value>" for every value of every factor."""
        return [f"{name}:{value}" for k, name in enumerate(self.factor_names)
                for value in self._value_names(k)]

    def attribute_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """Every factor one-hot; factor classes [B, K] -> bool [B, sum(factor_sizes)]."""
        self._ready()
        return torch.cat([F.one_hot(labels[:, k].long(), size).bool()
                          for k, size in enumerate(self._sizes)], dim=1)

    @classmethod
    def expected_factor_sizes(cls, options: dict) -> dict[str, int]:
        """{factor: number of classes} that a config's data has (before the file is read)."""
        raise NotImplementedError

    @classmethod
    def condition_size(cls, kind: str, options: dict) -> int:
        sizes = {k: n for k, n in cls.expected_factor_sizes(options).items() if n > 1}
        return sizes[options.get("label_factor", "shape")] if kind == "label" \
            else sum(sizes.values())


class FactorFileDataModule(FactorDataModule):
    """Factor data read from one downloaded file, `<data_dir>/<file_name>`, and cached as
    `<cache_dir>/<file stem>.npy` (cache_dir default: `<data_dir>/vaelab_cache`)."""

    def __init__(self, data_dir: str, file_name: str, cache_dir: str | None = None,
                 val_size: int | float = 10000, test_size: int | float = 10000, **kwargs):
        super().__init__(val_size=val_size, test_size=test_size, **kwargs)
        self.path = Path(data_dir).expanduser() / file_name
        folder = cache_folder(cache_dir, self.path.parent / "vaelab_cache")
        self.cache_path = folder / f"{self.path.stem}.npy"
