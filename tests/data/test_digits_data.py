"""The bundled 8x8 digits: offline, fixed splits, real labels."""

import pytest
import torch

from vaelab.data import DigitsDataModule


def test_digits_splits_are_disjoint_and_fixed():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    sizes = {split: len(dm.images(split)) for split in dm.split_names}
    assert sizes == {"train": 1297, "val": 200, "test": 300}
    images = dm.images("train")
    assert images.shape[1:] == (1, 8, 8) and images.dtype == torch.uint8
    assert images.max() == 255
    all_labels = torch.cat([dm.labels(split) for split in dm.split_names])
    assert set(all_labels.tolist()) == set(range(10))
    again = DigitsDataModule(batch_size=32)
    assert torch.equal(again.images("test"), dm.images("test"))  # setup on first use


def test_wrong_image_shape_in_config_is_a_clear_error():
    dm = DigitsDataModule(image_shape=(1, 28, 28))
    with pytest.raises(ValueError, match=r"\(1, 8, 8\) but data.image_shape is \[1, 28, 28\]"):
        dm.setup()
