"""The in-memory data path serves exactly the images and labels torchvision's MNIST serves,
and gathers batches cheaply."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.datasets import MNIST
from torchvision.transforms.functional import pil_to_tensor, to_tensor

from vaelab.data import MNISTDataModule
from vaelab.data.in_memory import TensorBatchLoader


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


class AtenOps(TorchDispatchMode):
    """The aten operators run inside the `with` block."""

    def __enter__(self):
        self.ops = set()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def test_loader_gathers_batches_by_rows_without_advanced_indexing():
    images = torch.arange(10 * 4, dtype=torch.uint8).view(10, 1, 2, 2)
    labels = torch.arange(10) % 3
    loader = TensorBatchLoader(images, labels, batch_size=4, shuffle=True, seed=1)
    with AtenOps() as spy:
        batches = list(loader)
    # index_select gathers a uint8 MNIST batch ~10x faster than images[idx]
    assert torch.ops.aten.index_select in spy.ops and torch.ops.aten.index not in spy.ops
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([b for b, _ in batches]), images[order])
    assert torch.equal(torch.cat([y for _, y in batches]), labels[order])
