"""scikit-learn's bundled 8x8 handwritten digits (1797 images): a dataset that needs no network."""

from collections.abc import Sequence

import torch
from sklearn.datasets import load_digits

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.splits import check_split_size, held_out_splits


class DigitsDataModule(InMemoryDataModule):
    """The UCI 8x8 digits as 1x8x8 uint8 images, split into train/val/test with a fixed seed."""

    def __init__(self, val_size: int | float = 200, test_size: int | float = 300,
                 split_seed: int = 12345,
                 image_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, **kwargs):
        super().__init__(image_shape=image_shape, num_classes=num_classes, **kwargs)
        check_split_size("data.val_size", val_size)
        check_split_size("data.test_size", test_size)
        self.val_size = val_size
        self.test_size = test_size
        self.split_seed = split_seed

    def load_splits(self):
        digits = load_digits()
        # Pixel values are counts 0..16; rescale to the 0..255 range every other dataset uses.
        images = torch.from_numpy(digits.images * (255.0 / 16.0)).round().to(torch.uint8)
        images = images.unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        rows = held_out_splits(len(images), self.val_size, self.test_size, self.split_seed,
                               "the bundled digits")
        return {split: (images[i], labels[i]) for split, i in rows.items()}
