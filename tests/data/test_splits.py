"""Seeded held-out splits: sizes, disjoint cover of every index, reproducible, clear errors."""

import logging
import re

import pytest
import torch

from vaelab.data.splits import held_out_splits, hold_out


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
    with pytest.raises(ValueError, match=r"data.val_size=5 .*without its test set has 5 images"):
        held_out_splits(10, val_size=0.5, test_size=0.5, seed=0)
    for bad in (0, -3, 1.0, 1.5, 0.0, True, "abc"):
        with pytest.raises(ValueError, match=re.escape(
                f"data.test_size={bad!r}: give a count of images >= 1 or a fraction in (0, 1)")):
            held_out_splits(10, val_size=1, test_size=bad, seed=0)


def test_split_sizes_are_counts_or_fractions_of_all_the_images():
    rows = held_out_splits(1000, val_size=0.15, test_size=0.2, seed=3)
    assert {s: len(i) for s, i in rows.items()} == {"train": 650, "val": 150, "test": 200}
    assert len(held_out_splits(7, val_size=0.01, test_size=2, seed=0)["val"]) == 1  # at least 1
    # a fraction and the count it gives hold out the same images
    counted = held_out_splits(1000, val_size=150, test_size=200, seed=3)
    assert all(torch.equal(rows[s], counted[s]) for s in rows)


def test_a_count_over_half_the_images_holds_out_a_tenth_and_says_so(caplog):
    """A default meant for the full data set (CIFAR-10's 5000 validation images) on a small
    set of the same format."""
    with caplog.at_level(logging.INFO, logger="vaelab"):
        kept, val = hold_out(2000, 5000, seed=0, what="CIFAR-10's training set")
    assert (len(kept), len(val)) == (1800, 200)
    assert caplog.messages == [
        "data.val_size=5000 is more than half of the 2000 images of CIFAR-10's training set: "
        "holding out 200 (10%) instead; set data.val_size to a count or a fraction to choose"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vaelab"):
        assert len(hold_out(2000, 1000, seed=0)[1]) == 1000  # half: as asked, silently
    assert caplog.messages == []