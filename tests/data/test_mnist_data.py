"""MNIST DataModule on tiny IDX files the tests write, and each way the data can be wrong."""

import gzip

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

from helpers.data import make_mnist, write_idx
from vaelab.data import MNISTDataModule
from vaelab.data.idx import IDXFormatError


def setup_dm(root, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(data_dir=str(root), val_size=20, batch_size=16, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_splits_shapes_and_dtypes(mnist_root):
    dm = setup_dm(mnist_root)
    sizes = {k: len(dm.images(k)) for k in dm.split_names}
    assert sizes == {"train": 100, "val": 20, "test": 40}
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (16,)
    assert len(dm.train_dataloader()) == 100 // 16 + 1  # and a last short batch of 4
    assert len(dm.val_dataloader()) == 2  # 16 + 4: every val image is used
    x = dm.model_input(images)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_swapped_train_and_test_files_are_refused(tmp_path):
    """Issue 21: the 10k test images trained, and 5k of them became the val split."""
    root = make_mnist(tmp_path / "data", n_train=40, n_test=120)
    with pytest.raises(ValueError, match=r"training files hold 40 images and its test files "
                                         r"120: the two look swapped"):
        setup_dm(root)


def test_train_and_val_come_from_the_training_file_without_overlap(mnist_root):
    dm = setup_dm(mnist_root)
    train, val = dm.images("train"), dm.images("val")
    joined = torch.cat([train, val]).flatten(1)
    assert len(torch.unique(joined, dim=0)) == 120
    assert torch.equal(setup_dm(mnist_root).images("val"), val)  # same seed, same split


def test_in_memory_data_equals_torchvision_mnist(mnist_root):
    dm = setup_dm(mnist_root)
    reference = MNIST(root=str(mnist_root), train=False, download=False)
    images, labels = dm.images("test"), dm.labels("test")
    assert torch.equal(images[:, 0], reference.data)
    assert torch.equal(labels, reference.targets)


def test_binarisation_modes(mnist_root):
    static = setup_dm(mnist_root, binarize="static")
    assert set(static.images("train").unique().tolist()) <= {0, 255}

    dynamic = setup_dm(mnist_root, binarize="dynamic")
    grey = dynamic.images("train")[:16]
    assert len(grey.unique()) > 2  # kept grey, sampled per batch
    torch.manual_seed(0)
    a, b = dynamic.model_input(grey, train=True), dynamic.model_input(grey, train=True)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    # Evaluation splits are binarised once, so every epoch scores the same images.
    assert set(dynamic.images("val").unique().tolist()) <= {0, 255}
    assert torch.equal(dynamic.images("val"), setup_dm(mnist_root, binarize="dynamic")
                       .images("val"))

    with pytest.raises(ValueError, match="data.binarize must be one of"):
        MNISTDataModule(data_dir=str(mnist_root), binarize="sometimes")


def test_missing_folder_names_the_files_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        setup_dm(tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "data.download=true" in message


def test_failed_download_says_how_to_get_the_files(tmp_path, monkeypatch):
    # A closed local port stands in for the unreachable mirrors: torchvision's real download runs.
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(RuntimeError) as err:
        setup_dm(tmp_path / "fresh", download=True)
    message = str(err.value)
    assert "downloading MNIST into" in message and "copy the four IDX files" in message


def test_truncated_file_is_reported_with_its_path(tmp_path):
    root = make_mnist(tmp_path / "data")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXFormatError, match="truncated or corrupt") as err:
        setup_dm(root)
    assert str(path) in str(err.value)


def test_wrong_magic_is_reported_with_its_path(tmp_path):
    root = make_mnist(tmp_path / "data")
    # Labels written where images belong: a 1-D IDX file (magic 2049) instead of 3-D (2051).
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    write_idx(path, np.zeros(120, dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="magic number 2049 .* has 2051") as err:
        setup_dm(root)
    assert str(path) in str(err.value)


def gzip_files(raw):
    """Replace every IDX file in `raw` by its .gz, as torchvision's mirrors serve them."""
    for path in list(raw.iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()


def test_gzipped_files_read_like_plain_ones(tmp_path):
    plain = setup_dm(make_mnist(tmp_path / "plain"))
    root = make_mnist(tmp_path / "gz")
    gzip_files(root / "MNIST" / "raw")
    packed = setup_dm(root)
    for split in ("train", "val", "test"):
        assert torch.equal(packed.images(split), plain.images(split))
        assert torch.equal(packed.labels(split), plain.labels(split))


@pytest.mark.parametrize("damage", ["not_gzip", "truncated", "bad_crc"])
def test_corrupt_gz_is_reported_with_its_path_and_the_fix(tmp_path, damage):
    root = make_mnist(tmp_path / "data")
    gzip_files(root / "MNIST" / "raw")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    if damage == "not_gzip":
        data = b"<html>mirror error page</html>"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # the CRC-32 in the gzip trailer no longer matches the data
        data = data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:]
    path.write_bytes(data)
    with pytest.raises(IDXFormatError, match="not a complete gzip file") as err:
        setup_dm(root)
    message = str(err.value)
    assert str(path) in message and "data.download=true" in message


def test_extra_bytes_are_reported(tmp_path):
    root = make_mnist(tmp_path / "data")
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0" * 3)
    with pytest.raises(IDXFormatError, match="holds 51 bytes but its header promises 48"):
        setup_dm(root)
