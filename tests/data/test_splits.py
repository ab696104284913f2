"""Seeded held-out splits: sizes, disjoint cover of every index, reproducible, clear errors."""

import pytest
import torch

from vaelab.data.splits import held_out_splits


def test_held_out_splits_cover_every_index_once_and_are_seeded():
    rows = held_out_splits(100, val_size=15, test_size=20, seed=3)
    assert {s: len(i) for s, i in rows.items()} == {"train": 65, "val": 15, "test": 20}
    assert all(i.dtype == torch.int64 for i in rows.values())
    assert sorted(torch.cat(list(rows.values())).tolist()) == list(range(100))
    again = held_out_splits(100, val_size=15, test_size=20, seed=3)
    assert all(torch.equal(rows[s], again[s]) for s in rows)
    other = held_out_splits(100, val_size=15, test_size=20, seed=4)
    assert not torch.equal(rows["test"], other["test"])


def test_held_out_splits_name_the_key_to_change():
    with pytest.raises(ValueError, match=r"data.test_size=10 must be between 1 and 9"):
        held_out_splits(10, val_size=1, test_size=10, seed=0)
    with pytest.raises(ValueError, match=r"data.val_size=8 .*without its test set has 8 images"):
        held_out_splits(10, val_size=8, test_size=2, seed=0)
