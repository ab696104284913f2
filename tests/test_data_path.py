"""The in-memory data path serves exactly the images and labels torchvision's MNIST serves."""

import torch
from torchvision.datasets import MNIST
from torchvision.transforms.functional import pil_to_tensor, to_tensor

from vaelab.data import MNISTDataModule


def as_records(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[bytes, int]]:
    return sorted((image.numpy().tobytes(), int(label)) for image, label in zip(images, labels,
                                                                                strict=True))


def test_mnist_batches_match_torchvision(mnist_root):
    dm = MNISTDataModule(data_dir=str(mnist_root), val_size=20, batch_size=32,
                         eval_batch_size=16, binarize="none")
    dm.setup("fit")
    tv_test = MNIST(str(mnist_root), train=False)
    tv_train = MNIST(str(mnist_root), train=True)

    # Test split: same order, through the loader and the float conversion training uses.
    images, labels = zip(*dm.test_dataloader(), strict=True)
    x = dm.model_input(torch.cat(images), train=False)
    expected = torch.stack([to_tensor(img) for img, _ in tv_test])
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert torch.equal(torch.cat(labels), tv_test.targets)

    # Train + val: together exactly torchvision's training set, each image with its label.
    ours = [*as_records(dm.images("train"), dm.labels("train")),
            *as_records(dm.images("val"), dm.labels("val"))]
    theirs = as_records(torch.stack([pil_to_tensor(img) for img, _ in tv_train]),
                        tv_train.targets)
    assert sorted(ours) == theirs

    # One training epoch visits every training image once, in uint8 slices.
    batches = list(dm.train_dataloader())
    assert all(b.dtype == torch.uint8 and b.shape[1:] == (1, 28, 28) for b, _ in batches)
    assert sum(len(b) for b, _ in batches) == len(dm.images("train"))
