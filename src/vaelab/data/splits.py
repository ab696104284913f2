"""Seeded splits of a dataset's indices: held-out sets of given sizes, or stratified fractions.
The one home of splitting for every DataModule (MNIST, CIFAR-10, image folders, factor data).

A split size (`data.val_size`, `data.test_size`) is a count of images or a fraction in (0, 1)
of them. A count of more than half the images is a default meant for a larger data set (5000
validation images of MNIST's 60,000): such a count holds out a tenth of the images instead, and
says so in one line.
"""

import numpy as np
import torch

from vaelab.console import log

#: what a count that would take more than half of the images is scaled to
SCALED_SHARE = 0.1


def check_split_size(key: str, size) -> None:
    """Raise a ValueError naming `key` unless `size` is a count >= 1 or a fraction in (0, 1)."""
    count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
    fraction = isinstance(size, float) and 0 < size < 1
    if not (count or fraction):
        raise ValueError(f"{key}={size!r}: give a count of images >= 1 or a fraction in (0, 1)")


def split_count(size: int | float, n: int, key: str = "data.val_size",
                what: str = "the data") -> int:
    """`size` as a number of `n` images: a fraction of them (rounded, at least 1) or a count; a
    count of more than half of them becomes a tenth of them, with a line saying so."""
    check_split_size(key, size)
    if isinstance(size, float):
        return max(1, round(n * size))
    if size > n / 2:
        scaled = max(1, round(n * SCALED_SHARE))
        log.info(f"{key}={size} is more than half of the {n} images of {what}: holding out "
                 f"{scaled} ({SCALED_SHARE:.0%}) instead; set {key} to a count or a fraction "
                 "to choose")
        return scaled
    return size


def hold_out(n: int, size: int | float, seed: int, key: str = "data.val_size",
             what: str = "the training set") -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) int64 indices of range(n): `size` of them (a count or a fraction, see
    `split_count`) held out, chosen by `seed`."""
    return _hold_out_count(n, split_count(size, n, key, what), seed, key, what)


def _hold_out_count(n: int, count: int, seed: int, key: str,
                    what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0 < count < n:
        raise ValueError(f"{key}={count} must be between 1 and {n - 1} ({what} has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:], order[:count]


def held_out_splits(n: int, val_size: int | float, test_size: int | float, seed: int,
                    what: str = "the data") -> dict[str, torch.Tensor]:
    """{"train", "val", "test"}: int64 indices of range(n); a test set, then a val set from the
    rest, held out at random (seeded), and the rest for training. Both sizes are counts or
    fractions of all n images (`split_count`)."""
    test_count = split_count(test_size, n, "data.test_size", what)
    val_count = split_count(val_size, n, "data.val_size", what)
    rest, test = _hold_out_count(n, test_count, seed, "data.test_size", what)
    kept, val = _hold_out_count(len(rest), val_count, seed, "data.val_size",
                                f"{what} without its test set")
    return {"train": rest[kept], "val": rest[val], "test": test}


def class_quotas(sizes: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """How many of each class's `sizes` images to take: floor or ceil of size * fraction each,
    summing to round(sum(sizes) * fraction); the largest remainders (ties in random order) get
    the ceil."""
    exact = sizes * fraction
    counts = np.floor(exact).astype(np.int64)
    extra = round(float(sizes.sum()) * fraction) - int(counts.sum())
    order = rng.permutation(len(sizes))
    counts[order[np.argsort((counts - exact)[order], kind="stable")[:extra]]] += 1
    return counts


def stratified_split(labels: np.ndarray, fractions: dict[str, float],
                     seed: int) -> dict[str, np.ndarray]:
    """{name: sorted indices} for each of `fractions` and "train" (the rest), by class.

    Each named split gets round(N * fraction) images, drawn from every class in proportion to
    its size (`class_quotas`), in a seeded random order within the class.
    """
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) >= 1:
        raise ValueError(f"split fractions {fractions} must be >= 0 and sum to less than 1")
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    quotas = {name: class_quotas(sizes, fraction, rng) for name, fraction in fractions.items()}
    parts: dict[str, list[np.ndarray]] = {"train": [], **{name: [] for name in fractions}}
    for k, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name in fractions:
            parts[name].append(members[start:start + quotas[name][k]])
            start += quotas[name][k]
        parts["train"].append(members[start:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
