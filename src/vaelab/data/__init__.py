from vaelab.data.celeba import CelebADataModule
from vaelab.data.cifar10 import CIFAR10DataModule
from vaelab.data.digits import DigitsDataModule
from vaelab.data.dsprites import DSpritesDataModule
from vaelab.data.factors import FactorDataModule
from vaelab.data.image_folder import ImageFolderDataModule
from vaelab.data.in_memory import InMemoryDataModule, TensorBatchLoader
from vaelab.data.mnist import FashionMNISTDataModule, MNISTDataModule
from vaelab.data.shapes3d import Shapes3DDataModule
from vaelab.data.sprites import SpritesDataModule

__all__ = [
    "CelebADataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "DSpritesDataModule",
    "FactorDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "Shapes3DDataModule",
    "SpritesDataModule",
    "TensorBatchLoader",
]
