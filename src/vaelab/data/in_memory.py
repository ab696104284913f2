"""Datasets held whole in memory as uint8 tensors, served in batches by slicing, not per item."""

from collections.abc import Callable, Iterator, Sequence

import lightning as L
import torch
from torch.nn import functional as F

from vaelab.console import log
from vaelab.data.splits import check_split_size, hold_out

BINARIZE = ("none", "static", "dynamic", "threshold")
#: images each device needs in a training batch: batch statistics (batch norm, beta-TCVAE's
#: q(z), DIP-VAE's covariance, FactorVAE's permutation) need two
MIN_TRAIN_BATCH = 2


class TensorBatchLoader:
    """Yields (images uint8 [B, C, H, W], labels [B]) batches from in-memory tensors, and the
    images' indices [B] into the tensors when `with_indices`.

    Under DDP each rank takes every world_size-th index of one shared permutation, so ranks
    see disjoint shards and the global batch is `batch_size * world_size`. The last batch may be
    short (every image is seen once an epoch); `same_steps` (training) makes every rank take the
    same number of steps, keeping the last global batch only when each rank gets at least
    MIN_TRAIN_BATCH of its images (the ranks' shares of it differ by at most one).
    Resumable mid-epoch: `state_dict()` records how many batches of the epoch were trained
    (`batches_done()`, counted by the trainer, since Lightning fetches one batch ahead), and
    after `load_state_dict` the next pass skips them.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, same_steps: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, epoch: Callable[[], int] | None = None,
                 batches_done: Callable[[], int] | None = None, with_indices: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.same_steps = batch_size, shuffle, same_steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._epoch = epoch or (lambda: 0)
        self._batches_done = batches_done or (lambda: 0)
        self.with_indices = with_indices
        self._skip = 0

    def _indices(self) -> torch.Tensor:
        n = len(self.images)
        if self.shuffle:
            # Seeded by epoch, so a resumed run sees the same order as an uninterrupted one.
            g = torch.Generator().manual_seed(self.seed + self._epoch())
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        if self.same_steps:
            # Shards differ by up to one image; every rank must take the same number of
            # training steps, or DDP's gradient all-reduce would wait forever for the shortest.
            full, rest = divmod(len(self.images), self.batch_size * self.world_size)
            return full + (rest >= MIN_TRAIN_BATCH * self.world_size)
        n = len(range(self.rank, len(self.images), self.world_size))
        return -(-n // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch(), "batches_done": self._batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = state["batches_done"] if state["epoch"] == self._epoch() else 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # One copy of the epoch's order to the data's device (a GPU with data.on_device=true),
        # not one small copy per batch.
        indices = self._indices().to(self.images.device)
        skip, self._skip = self._skip, 0
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            idx = indices[start:start + self.batch_size]
            # index_select copies whole rows: ~10x faster than advanced indexing (images[idx])
            images, labels = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            yield (images, labels, idx) if self.with_indices else (images, labels)


def threshold(images: torch.Tensor) -> torch.Tensor:
    """Pixels above half intensity -> 255, the rest 0 (uint8, same shape): the binary images
    with the least noise, for data too small to average dynamic binarisation's noise out."""
    return (images > 127).to(torch.uint8) * 255


def binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """One fixed Bernoulli draw per pixel, as uint8 0/255; same shape as `images`."""
    g = torch.Generator().manual_seed(seed)
    probs = images.float() / 255.0
    return (torch.bernoulli(probs, generator=g) * 255).to(torch.uint8)


class InMemoryDataModule(L.LightningDataModule):
    """Base for datasets that fit in memory (or in a memory-mapped cache).

    Subclasses implement `load_splits`. Everything outside `vaelab.data` uses only the public
    surface below, never the stored tensors:

    - `split_names`, `images(split)`, `reference_images(split)`, `labels(split)`: the data as
      stored, uint8 [N, C, H, W] (binarised where the binarisation is fixed) and labels;
    - `model_input(images)`: uint8 images -> the float batch the model sees;
    - `class_labels(labels)`, `class_names`: one class per image, for colouring plots;
    - `attributes(split)`: named binary attributes (classes one-hot for class data), also as
      `attribute_names` and `attribute_rows(labels)` for a batch's labels;
    - `condition_size(kind, options)` (a classmethod): how long a conditional model's
      condition vectors are for this data's config;
    - `factor_names`, `factor_sizes`, `sample_factors`, `images_from_factors`, `grid_index`,
      `grid_factors` on data with ground-truth factors (`has_factors`, data/factors.py).

    Batches leave the loader as uint8 and become floats in [0, 1] on the training device
    (`on_after_batch_transfer`), where dynamic binarisation also samples.
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int, batch_size: int = 128,
                 eval_batch_size: int | None = None, binarize: str = "none", seed: int = 0,
                 on_device: bool = False):
        super().__init__()
        if binarize not in BINARIZE:
            raise ValueError(f"data.binarize must be one of {BINARIZE}, got {binarize!r}")
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.binarize = binarize
        self.seed = seed
        self.on_device = on_device
        #: when True, test batches are (images, labels, indices into the test split)
        self.index_test_batches = False
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._references: dict[str, torch.Tensor] = {}

    # -- for subclasses ------------------------------------------------------------------------
    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"train"|"val"|"test": (uint8 images [N, C, H, W], int64 labels [N] or [N, K])}.

        Labels are class ids [N], K binary attributes [N, K] (then override class_labels and
        attribute_names) or K factor classes [N, K]. Called once, by `setup`.
        """
        raise NotImplementedError

    # -- the public surface --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        splits = self.load_splits()
        for name, (images, _) in splits.items():
            if tuple(images.shape[1:]) != self.image_shape:
                raise ValueError(
                    f"{name} images have shape {tuple(images.shape[1:])} but data.image_shape "
                    f"is {list(self.image_shape)}: fix data.image_shape in the data config"
                )
        for i, name in enumerate(splits):
            images, labels = splits[name]
            self._references[name] = images
            # Static binarisation fixes every split once; dynamic fixes only val/test, so
            # evaluation numbers are comparable between epochs and runs.
            if self.binarize == "static" or (self.binarize == "dynamic" and name != "train"):
                images = binarize_once(images, self.seed + i)
            elif self.binarize == "threshold":
                images = threshold(images)
            splits[name] = (images, labels)
        if self.on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            splits = {k: (x.to(device), y.to(device)) for k, (x, y) in splits.items()}
        self._splits = splits

    @property
    def split_names(self) -> list[str]:
        """The splits this data has, e.g. ["train", "val", "test"] (after setup)."""
        self.setup()
        return list(self._splits)

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.setup()
        if split not in self._splits:
            raise ValueError(f"split={split!r} is not one of this data's splits "
                             f"{sorted(self._splits)}")
        return self._splits[split]

    def images(self, split: str) -> torch.Tensor:
        """The split's images as the model is fed them, uint8 [N, C, H, W] (binarised where the
        binarisation is fixed: static, or val/test under dynamic)."""
        return self._split(split)[0]

    def reference_images(self, split: str) -> torch.Tensor:
        """The split's images before any binarisation, uint8 [N, C, H, W]: what likelihood
        means (reconstructions, samples) are compared with."""
        self._split(split)
        return self._references[split]

    def labels(self, split: str) -> torch.Tensor:
        """The split's labels: class ids int64 [N], or attributes/factor classes [N, K]."""
        return self._split(split)[1]

    def model_input(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float in [0, 1]; dynamic binarisation samples when training."""
        x = images.float().div_(255.0)
        if train and self.binarize == "dynamic":
            x = torch.bernoulli(x)
        return x

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """One class per image (int64 [B]) for colouring plots; multi-attribute data picks one."""
        return labels

    @property
    def class_names(self) -> list[str]:
        """Legend names of the classes that `class_labels` returns (default: "0", "1", ...)."""
        return [str(c) for c in range(self.num_classes)]

    @property
    def attribute_names(self) -> list[str]:
        """Names of the A binary attributes (for class data the classes: `class_names`)."""
        return self.class_names

    def attribute_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """The attributes of a batch's labels; -> bool [B, A] (class data: one-hot classes)."""
        return F.one_hot(labels.long(), self.num_classes).bool()

    def attributes(self, split: str) -> tuple[list[str], torch.Tensor]:
        """(names, bool [N, A]): named binary attributes of the split's images."""
        return self.attribute_names, self.attribute_rows(self.labels(split))

    @classmethod
    def condition_size(cls, kind: str, options: dict) -> int:
        """The length of a conditional model's condition vectors for data configured by
        `options`: label, a one-hot class; attributes, the attribute rows (classes here)."""
        return options["num_classes"]

    @property
    def has_factors(self) -> bool:
        """True for data with ground-truth generative factors (dSprites-like)."""
        return False

    # -- loaders -------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _loader(self, split: str, batch_size: int, train: bool,
                with_indices: bool = False) -> TensorBatchLoader:
        rank, world_size = self._world()
        if batch_size % world_size:
            raise ValueError(
                f"data.batch_size={batch_size} is the global batch and must divide evenly over "
                f"{world_size} devices"
            )
        images, labels = self._split(split)
        loader = TensorBatchLoader(
            images, labels, batch_size // world_size, shuffle=train, same_steps=train,
            seed=self.seed, rank=rank, world_size=world_size,
            epoch=(lambda: self.trainer.current_epoch) if self.trainer is not None else None,
            batches_done=self._batches_trained if train and self.trainer is not None else None,
            with_indices=with_indices,
        )
        if len(loader) == 0:
            least = MIN_TRAIN_BATCH if train else 1
            raise ValueError(
                f"the {split} split has {len(images)} images, fewer than {least} per device "
                f"({world_size} devices): give it more images, or train on fewer devices"
            )
        return loader

    def _batches_trained(self) -> int:
        """Training batches of the current epoch whose optimiser step has run."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", self.batch_size, train=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", self.eval_batch_size, train=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", self.eval_batch_size, train=False,
                            with_indices=self.index_test_batches)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, *rest = batch
        training = self.trainer is not None and self.trainer.training
        return (self.model_input(images, train=training), *rest)


class OfficialSplitDataModule(InMemoryDataModule):
    """Data published as a train set and a test set (MNIST, Fashion-MNIST, CIFAR-10): the val
    split is `val_size` images (a count or a fraction) held out of train (seeded by
    `split_seed`). Subclasses read the files (`read_train_test`), say whether they are there
    (`files_present`) and fetch them (`fetch`, when `download` is set)."""

    #: how log lines and errors name the data
    title = "the data"

    def __init__(self, data_dir: str, image_shape: Sequence[int], num_classes: int = 10,
                 download: bool = False, val_size: int | float = 5000, split_seed: int = 12345,
                 **kwargs):
        super().__init__(image_shape=image_shape, num_classes=num_classes, **kwargs)
        check_split_size("data.val_size", val_size)
        self.data_dir = data_dir
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed

    def read_train_test(self) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                       tuple[torch.Tensor, torch.Tensor]]:
        """((train images, labels), (test images, labels)), uint8 [N, C, H, W] and int64 [N]."""
        raise NotImplementedError

    def files_present(self) -> bool:
        raise NotImplementedError

    def fetch(self) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        # Lightning calls prepare_data on one process only, so downloads never race.
        if self.download and not self.files_present():
            self.fetch()

    def load_splits(self):
        (images, labels), test = self.read_train_test()
        if len(images) < len(test[0]):
            raise ValueError(
                f"{self.title} in {self.data_dir}: its training files hold {len(images)} images "
                f"and its test files {len(test[0])}: the two look swapped (the training set is "
                "the larger one); put each file under its own name")
        train, val = hold_out(len(images), self.val_size, self.split_seed,
                              what=f"{self.title}'s training set")
        log.info(f"{self.title} from {self.data_dir}: {len(train)} train, {len(val)} val, "
                 f"{len(test[0])} test")
        return {"train": (images[train], labels[train]), "val": (images[val], labels[val]),
                "test": test}
