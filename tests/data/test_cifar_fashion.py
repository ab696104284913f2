"""CIFAR-10 (restricted unpickling) and Fashion-MNIST on files in torchvision's formats."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, FashionMNIST

from helpers.data import CIFAR_CLASSES, make_mnist, write_cifar
from vaelab.data import CIFAR10DataModule, FashionMNISTDataModule
from vaelab.data.cifar10 import CIFARFormatError, cifar_file_bytes
from vaelab.train import train


@pytest.fixture
def cifar_root(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "data"
    return root, write_cifar(root)


def setup_cifar(root: Path, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=str(root), val_size=10, batch_size=4, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def as_images(data: np.ndarray) -> torch.Tensor:
    """[N, 3072] CIFAR rows -> [N, 3, 32, 32], pixel by pixel: (c, y, x) = c*1024 + y*32 + x."""
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return torch.from_numpy(data[:, c * 1024 + y * 32 + x])


def test_cifar_splits_pixels_and_class_names(cifar_root):
    root, written = cifar_root
    dm = setup_cifar(root)
    assert dm.class_names == CIFAR_CLASSES
    batches = [written[f"data_batch_{i}"] for i in range(1, 6)]
    reference = as_images(np.concatenate([data for data, _ in batches]))
    reference_labels = np.concatenate([labels for _, labels in batches])
    row_of = {image.numpy().tobytes(): i for i, image in enumerate(reference)}
    # train and val are the training batches' images, split without overlap or loss.
    rows = {}
    for split in ("train", "val"):
        images, labels = dm.images(split), dm.labels(split)
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        rows[split] = [row_of[image.numpy().tobytes()] for image in images]
        assert labels.tolist() == reference_labels[rows[split]].tolist()
    assert len(rows["val"]) == 10 and sorted(rows["train"] + rows["val"]) == list(range(40))
    assert torch.equal(dm.images("test"), as_images(written["test_batch"][0]))
    assert dm.labels("test").tolist() == written["test_batch"][1].tolist()
    assert setup_cifar(root).labels("val").tolist() == dm.labels("val").tolist()


def test_cifar_matches_torchvision(cifar_root, monkeypatch):
    root, _ = cifar_root
    dm = setup_cifar(root)
    # torchvision checks the real files' MD5 sums; these tiny files pass with the check off.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    reference = CIFAR10(str(root), train=False)
    assert torch.equal(dm.images("test"), torch.from_numpy(reference.data).permute(0, 3, 1, 2))
    assert dm.labels("test").tolist() == reference.targets
    assert reference.classes == dm.class_names


class RunsCode:
    """Unpickling this runs `touch <marker>`: what a crafted "batch" could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["whole_file", "inside_data"])
def test_crafted_pickle_is_refused_without_running_code(cifar_root, tmp_path, where):
    root, _ = cifar_root
    marker = tmp_path / "pwned"
    path = root / "cifar-10-batches-py" / "data_batch_3"
    payload = RunsCode(marker)
    entry = payload if where == "whole_file" else {b"data": payload, b"labels": []}
    path.write_bytes(cifar_file_bytes(entry))
    assert pickle.loads(pickle.dumps(RunsCode(tmp_path / "control"))) == 0  # the payload works
    assert (tmp_path / "control").exists()
    with pytest.raises(CIFARFormatError, match=r"data_batch_3 was not loaded: it asks to import "
                                               r"\w+\.system.*data.download=true"):
        setup_cifar(root)
    assert not marker.exists()


class AllocatedBeforeItsData:
    """Unpickles to numpy's helper called with a 2 GB shape: a few bytes that ask for gigabytes
    (issue 21: 11 GiB from 264 bytes)."""

    def __reduce__(self):
        from vaelab.data.cifar10 import _numpy_reconstruct

        return _numpy_reconstruct(), (np.ndarray, (700_000, 3072), b"B")


def test_a_pickle_that_asks_for_gigabytes_is_refused(cifar_root):
    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(cifar_file_bytes({b"data": AllocatedBeforeItsData(), b"labels": [0]}))
    assert path.stat().st_size < 300
    with pytest.raises(CIFARFormatError, match=r"asks for a numpy array of shape \(700000, "
                                               r"3072\) allocated before its data"):
        setup_cifar(root)


def test_labels_that_nest_billions_of_references_are_refused_at_once(cifar_root, tmp_path):
    """Issue 21 item 8: np.asarray walked 10^10 elements of a 400-byte list structure."""
    import subprocess
    import sys

    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_1"
    labels: list = [0] * 100
    for _ in range(4):
        labels = [labels] * 100  # the same list 100 times: one memo reference each
    path.write_bytes(cifar_file_bytes({b"data": np.zeros((100, 3072), np.uint8),
                                       b"labels": labels}))
    assert len(pickle.dumps(labels, protocol=2)) < 2000  # 10^10 numbers in 2 KB
    code = ("from pathlib import Path; from vaelab.data.cifar10 import read_batch\n"
            f"try: read_batch(Path({str(path)!r}))\nexcept ValueError as e: print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout  # the old reader never returned
    assert "'labels' should be 100 class ids in 0..9" in out


def test_cifar_damage_and_missing_files_are_named(cifar_root):
    root, _ = cifar_root
    folder = root / "cifar-10-batches-py"
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CIFARFormatError, match=r"data_batch_2 is not a readable pickle.*"
                                               r"truncated or corrupt"):
        setup_cifar(root)
    path.write_bytes(cifar_file_bytes({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(CIFARFormatError, match=r"'data' should be uint8 \[N, 3072\] but is "
                                               r"uint8 \[4, 100\]"):
        setup_cifar(root)
    path.unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing in .*: data_batch_2, test_batch\. "
                                                r"Set data.download=true"):
        setup_cifar(root)
    (root / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python.tar.gz is there: extract it"):
        setup_cifar(root)


def test_cifar_failed_download_says_how_to_get_the_files(tmp_path, monkeypatch):
    # A closed local port stands in for the unreachable server: torchvision's download runs.
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(RuntimeError, match="downloading CIFAR-10 into .* failed"):
        setup_cifar(tmp_path / "fresh", download=True)


def fashion_root(tmp_path: Path) -> Path:
    """A tiny Fashion-MNIST: the same IDX files as the MNIST fixture, in FashionMNIST/raw."""
    root = make_mnist(tmp_path / "data")
    (root / "MNIST").rename(root / "FashionMNIST")
    return root


def test_fashion_mnist_reads_torchvision_layout_with_class_names(tmp_path):
    root = fashion_root(tmp_path)
    dm = FashionMNISTDataModule(data_dir=str(root), val_size=20, batch_size=16)
    dm.setup()
    assert dm.class_names[:2] == ["T-shirt/top", "Trouser"] and len(dm.class_names) == 10
    assert dm.attributes("test")[0][9] == "Ankle boot"
    reference = FashionMNIST(root=str(root), train=False, download=False)
    assert torch.equal(dm.images("test")[:, 0], reference.data)
    assert torch.equal(dm.labels("test"), reference.targets)
    assert {k: len(dm.images(k)) for k in dm.split_names} == {"train": 100, "val": 20,
                                                               "test": 40}
    with pytest.raises(FileNotFoundError, match=r"FashionMNIST files missing in .*"
                                                r"FashionMNIST/raw"):
        FashionMNISTDataModule(data_dir=str(tmp_path / "nowhere")).setup()


@pytest.mark.integration
def test_cifar_recipe_fast_dev_run(cifar_root, make_cfg):
    root, _ = cifar_root
    cfg = make_cfg(["experiment=cifar10_vae", "debug=fdr", f"data.data_dir={root}",
                    "data.batch_size=4", "data.eval_batch_size=4", "data.val_size=8"])
    assert cfg.data.image_shape == [3, 32, 32] and cfg.model.latent_dim == 128
    assert cfg.model.decoder.out_channels == 100  # 10 components x 10 parameters for RGB
    metrics = train(cfg)
    assert np.isfinite(metrics["test/elbo"])


@pytest.mark.integration
def test_fashion_recipe_composes(tmp_path, make_cfg):
    root = fashion_root(tmp_path)
    cfg = make_cfg(["experiment=fashion_mnist_2d", "debug=fdr", f"data.data_dir={root}",
                    "data.val_size=20", "data.batch_size=16", "data.eval_batch_size=20"])
    assert cfg.model.latent_dim == 2 and cfg.data._target_.endswith("FashionMNISTDataModule")
    assert np.isfinite(train(cfg)["test/elbo"])
