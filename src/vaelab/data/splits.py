"""Seeded splits of a dataset's indices: held-out sets of fixed sizes, or stratified fractions.
The one home of splitting for every DataModule (MNIST, CIFAR-10, image folders, factor data)."""

import numpy as np
import torch


def hold_out(n: int, size: int, seed: int, key: str = "data.val_size",
             what: str = "the training set") -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) int64 indices of range(n): `size` of them held out, chosen by `seed`."""
    if not 0 < size < n:
        raise ValueError(f"{key}={size} must be between 1 and {n - 1} ({what} has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[size:], order[:size]


def held_out_splits(n: int, val_size: int, test_size: int, seed: int,
                    what: str = "the data") -> dict[str, torch.Tensor]:
    """{"train", "val", "test"}: int64 indices of range(n); a test set, then a val set from the
    rest, held out at random (seeded), and the rest for training."""
    rest, test = hold_out(n, test_size, seed, "data.test_size", what)
    kept, val = hold_out(len(rest), val_size, seed, "data.val_size", f"{what} without its test set")
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
