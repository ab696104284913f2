"""CelebA DataModule: both folder layouts, official partitions, the cache, and folder errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import CELEBA_ATTRIBUTES, write_celeba
from vaelab.data.celeba import CelebADataModule, CelebAFolderError
from vaelab.train import train

N = 36
BORDER = (255, 0, 0)


def face_colours(n: int) -> np.ndarray:
    """A distinct RGB colour per image, uint8 [n, 3]."""
    i = np.arange(n)
    return np.stack([i * 6, 255 - i * 6, np.full(n, 128)], axis=1).astype(np.uint8)


def make_faces(colours: np.ndarray) -> np.ndarray:
    """218x178 images (CelebA's size): a red frame around a 160x160 square of colour (6 px of margin
    around the central 148x148 crop, so JPEG bleeding at the edge stays outside the crop)."""
    images = np.empty((len(colours), 218, 178, 3), dtype=np.uint8)
    images[:] = BORDER
    images[:, 29:189, 9:169] = colours[:, None, None]
    return images


@pytest.fixture
def celeba_data():
    rng = np.random.default_rng(0)
    return {
        "colours": face_colours(N),
        "attributes": rng.integers(0, 2, size=(N, 40)).astype(np.uint8),
        # Interleaved ids, so a reader that assumed contiguous partitions would fail.
        "partition": rng.permutation(np.array([0] * 24 + [1] * 6 + [2] * 6)),
        "identity": rng.integers(1, 10, size=N),
    }


def write(root: Path, data: dict, layout: str = "official") -> Path:
    return write_celeba(root, make_faces(data["colours"]), data["attributes"],
                        data["partition"], layout, identity=data["identity"])


def datamodule(data_dir: Path, **kwargs) -> CelebADataModule:
    kwargs = {"cache": False, "batch_size": 4, **kwargs}
    dm = CelebADataModule(data_dir=str(data_dir), **kwargs)
    dm.setup()
    return dm


@pytest.mark.parametrize("layout", ["official", "kaggle"])
def test_reads_layout_with_official_partitions(tmp_path, celeba_data, layout):
    # Kaggle's copy sits in <data_dir>/celeba like torchvision's download: that is found too.
    write(tmp_path / "celeba" if layout == "kaggle" else tmp_path, celeba_data, layout)
    dm = datamodule(tmp_path)
    assert dm.attribute_names == CELEBA_ATTRIBUTES
    for split, pid in (("train", 0), ("val", 1), ("test", 2)):
        rows = np.flatnonzero(celeba_data["partition"] == pid)
        images, labels = dm.images(split), dm.labels(split)
        assert images.shape == (len(rows), 3, 64, 64) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.equal(labels, torch.from_numpy(celeba_data["attributes"][rows]).long())
        # The central crop holds only the image's colour: no red frame survives the crop.
        pixel_error = (images.float() - torch.from_numpy(celeba_data["colours"][rows]).float()
                       [:, :, None, None]).abs()
        assert pixel_error.max() <= 8, f"{split}: crop/resize or image order is wrong"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and y.shape == (4, 40)
    male = CELEBA_ATTRIBUTES.index("Male")
    assert torch.equal(dm.class_labels(y), y[:, male])
    if layout == "official":
        train_rows = np.flatnonzero(celeba_data["partition"] == 0)
        assert dm.identities["train"].tolist() == celeba_data["identity"][train_rows].tolist()
    else:
        assert dm.identities == {}


def test_crop_and_size_are_configurable(tmp_path, celeba_data):
    dm = datamodule(write(tmp_path, celeba_data), image_shape=[3, 32, 24], crop_size=None)
    images = dm.images("val")
    assert images.shape[1:] == (3, 32, 24)
    # Without a crop the red frame is part of the picture: the corner pixel is red.
    assert images[:, 0, 0, 0].float().min() > 200 and images[:, 1, 0, 0].float().max() < 60


def test_cache_built_reused_and_rebuilt(tmp_path, celeba_data, monkeypatch, decoded_files):
    root = write(tmp_path / "celeba", celeba_data)
    cache_dir = tmp_path / "cache"
    decoded = decoded_files
    kwargs = {"cache": True, "cache_dir": str(cache_dir)}
    first = datamodule(root, **kwargs)
    assert len(decoded) == N
    arrays = sorted(cache_dir.glob("*.npy"))
    assert [p.name.split("-")[0] for p in arrays] == ["test", "train", "val"]
    assert all(p.with_suffix(".json").is_file() for p in arrays)
    uncached = datamodule(root)
    for split in ("train", "val", "test"):
        assert torch.equal(first.images(split), uncached.images(split))

    decoded.clear()
    datamodule(root, **kwargs)
    assert decoded == [], "a valid cache must be reused, not rebuilt"

    # A changed source image: only its split is rebuilt, and the new pixels are served.
    train_rows = np.flatnonzero(celeba_data["partition"] == 0)
    new_face = make_faces(np.array([[10, 20, 30]], dtype=np.uint8))[0]
    Image.fromarray(new_face).save(root / "img_align_celeba" / f"{train_rows[3] + 1:06d}.jpg")
    decoded.clear()
    rebuilt = datamodule(root, **kwargs)
    assert len(decoded) == len(train_rows)
    assert (rebuilt.images("train")[3].float().mean((1, 2)) - torch.tensor([10., 20, 30])
            ).abs().max() < 8

    # An interrupted build (array without manifest) and a truncated array: both rebuilt.
    val_array = next(cache_dir.glob("val-*.npy"))
    val_array.with_suffix(".json").unlink()
    test_array = next(cache_dir.glob("test-*.npy"))
    test_array.write_bytes(test_array.read_bytes()[:-100])
    decoded.clear()
    again = datamodule(root, **kwargs)
    assert len(decoded) == 12
    assert torch.equal(again.images("test"), uncached.images("test"))

    # Other preprocessing parameters get their own cache file; the manifest records them.
    decoded.clear()
    datamodule(root, image_shape=[3, 16, 16], **kwargs)
    assert len(decoded) == N
    small = json.loads(next(cache_dir.glob("val-16x16-*.json")).read_text())
    assert small["params"]["image_shape"] == [3, 16, 16] and small["num_images"] == 6


def test_stale_manifest_parameters_are_not_trusted(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data)
    expected = datamodule(root, cache=True).images("val").clone()
    manifest_path = next((root / "vaelab_cache").glob("val-*.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["resample"] = "nearest"  # as if another version had written this file
    manifest_path.write_text(json.dumps(manifest))
    cache = next((root / "vaelab_cache").glob("val-*.npy"))
    np.save(cache, np.zeros_like(expected.numpy()))
    reloaded = datamodule(root, cache=True)
    assert torch.equal(reloaded.images("val"), expected)


def test_missing_parts_are_listed(tmp_path, celeba_data):
    with pytest.raises(CelebAFolderError, match="does not exist") as err:
        datamodule(tmp_path / "nowhere")
    assert "mmlab.ie.cuhk.edu.hk" in str(err.value)
    root = write(tmp_path / "celeba", celeba_data)
    (root / "list_attr_celeba.txt").unlink()
    for image in (root / "img_align_celeba").iterdir():
        image.unlink()
    (root / "img_align_celeba").rmdir()
    with pytest.raises(CelebAFolderError) as err:
        datamodule(root)
    missing = str(err.value).split(" Get CelebA")[0]
    assert "img_align_celeba/" in missing and "list_attr_celeba.txt" in missing
    assert "list_eval_partition" not in missing


def test_missing_attribute_file(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data, "kaggle")
    (root / "list_attr_celeba.csv").unlink()
    with pytest.raises(CelebAFolderError, match=r"missing list_attr_celeba\.txt \(or list_attr"):
        datamodule(root)


def test_partition_naming_absent_images(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data)
    (root / "img_align_celeba" / "000007.jpg").unlink()
    (root / "img_align_celeba" / "000009.jpg").unlink()
    with pytest.raises(CelebAFolderError, match=r"names 36 images but 2 of them are not in .*"
                                                r"000007\.jpg, 000009\.jpg"):
        datamodule(root)


def test_unknown_label_attribute(tmp_path, celeba_data):
    with pytest.raises(ValueError, match="label_attribute='Glasses' is not a column"):
        datamodule(write(tmp_path, celeba_data), label_attribute="Glasses")


@pytest.mark.parametrize("recipe", ["celeba_vae", "celeba_beta_vae"])
@pytest.mark.integration
def test_recipe_fast_dev_run(tmp_path, celeba_data, make_cfg, recipe):
    root = write(tmp_path / "data", celeba_data)
    cfg = make_cfg([f"experiment={recipe}", "debug=fdr", f"data.data_dir={root}",
                    "data.batch_size=4", "data.eval_batch_size=4"])
    assert cfg.data.image_shape == [3, 64, 64] and 64 <= cfg.model.latent_dim <= 128
    assert cfg.model.likelihood.learn_scale == (recipe == "celeba_vae")
    metrics = train(cfg)
    assert np.isfinite(metrics["test/elbo"])
    # Lightning's prepare_data built the cache of every split before training.
    assert len(list((root / "vaelab_cache").glob("*.json"))) == 3


def test_corrupt_attribute_row_is_named(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data)
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(" ", 1)[0]  # 000004.jpg loses its last value
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"40 integers, but the line '000004\.jpg [-1 ]+' is not"):
        datamodule(root)


@pytest.mark.parametrize("damage, message", [
    # a value that is not an integer: the line is named (it was "the line of ?")
    (lambda lines: lines[:6] + [lines[6].replace(" 1", " x", 1)] + lines[7:],
     r"the line '000005\.jpg [-1 ]*x[-1 ]*' is not"),
    # the same image twice: which row is right cannot be told (the last one won)
    (lambda lines: lines + [lines[3]], r"lists 000002\.jpg more than once"),
])
def test_attribute_rows_that_cannot_be_read_are_named(tmp_path, celeba_data, damage, message):
    root = write(tmp_path, celeba_data)
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    if " 1" not in lines[6]:
        lines[6] = lines[6].replace("-1", " 1", 1)
    path.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(ValueError, match=message):
        datamodule(root)


def test_a_binary_attribute_file_is_named(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data)
    (root / "list_attr_celeba.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt is not a text file"):
        datamodule(root)


def test_corrupt_image_is_named(tmp_path, celeba_data):
    root = write(tmp_path, celeba_data)
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CelebAFolderError, match=r"000003\.jpg is not a readable image"):
        datamodule(root, cache=True)
    # The split holding the bad image has no cache file and no partial file is left behind.
    split = ("train", "val", "test")[celeba_data["partition"][2]]
    left = [p.name for p in (root / "vaelab_cache").iterdir()]
    assert not [name for name in left if name.startswith(split) or "partial" in name], left
