from vaelab.data.celeba import CelebADataModule
from vaelab.data.digits import DigitsDataModule
from vaelab.data.in_memory import InMemoryDataModule, TensorBatchLoader
from vaelab.data.mnist import MNISTDataModule

__all__ = [
    "CelebADataModule",
    "DigitsDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TensorBatchLoader",
]
