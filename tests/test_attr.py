"""vaelab-attr: attribute vectors on synthetic faces (CelebA layout) and on digit classes."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import CELEBA_ATTRIBUTES, write_celeba
from vaelab.attr import attribute_vector_figure, shifted_decodes
from vaelab.checkpoints import load_run
from vaelab.configs import compose_config
from vaelab.train import train

pytestmark = pytest.mark.integration

EYEGLASSES = CELEBA_ATTRIBUTES.index("Eyeglasses")
SMILING = CELEBA_ATTRIBUTES.index("Smiling")
SIZE = 16
GLASSES = (slice(5, 8), slice(2, 14))  # rows, cols of the dark bar that "is" the eyeglasses


def synthetic_faces(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """16x16 faces (random background, skin and eyes; a bright mouth when smiling; a dark bar
    across the eyes when wearing glasses): uint8 [n, 16, 16, 3] and attributes [n, 40]."""
    attributes = rng.integers(0, 2, size=(n, 40)).astype(np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - 8) ** 2 + (xx - 8) ** 2 <= 36
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.float64)
    for i in range(n):
        images[i] = rng.uniform(0.2, 0.5, size=3)
        images[i][disc] = rng.uniform(0.6, 0.9) * np.array([1.0, 0.85, 0.7])
        images[i, 6, [5, 10]] = 0.3
        if attributes[i, SMILING]:
            images[i, 11:13, 5:11] = (0.9, 0.3, 0.3)
        if attributes[i, EYEGLASSES]:
            images[i][GLASSES] = 0.05
    return (images * 255).round().astype(np.uint8), attributes


def test_eyeglasses_vector_darkens_the_glasses_region(tmp_path, make_cfg):
    rng = np.random.default_rng(0)
    faces, attributes = synthetic_faces(320, rng)
    partition = np.array([0] * 240 + [1] * 40 + [2] * 40)
    root = write_celeba(tmp_path / "faces", faces, attributes, partition)
    train(make_cfg([
        "experiment=celeba_vae", f"data.data_dir={root}", f"data.image_shape=[3,{SIZE},{SIZE}]",
        "data.crop_size=null", "data.cache=false", "data.batch_size=32",
        "model.latent_dim=16", "model.encoder.channels=[16,32]", "model.decoder.channels=[32,16]",
        "trainer.max_epochs=15", "logger=none", "test=false",
    ]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_config("attr", [f"ckpt_path={ckpt}", "attribute=Eyeglasses", "num_show=6"],
                         tmp_path / "attr")
    paths = attribute_vector_figure(cfg)

    saved = torch.load(paths["vector"])
    assert saved["vector"].shape == (16,)
    assert saved["num_with"] + saved["num_without"] == 240
    figure = Image.open(paths["figure"])
    assert figure.width > 5 * SIZE and figure.height > 6 * SIZE

    _, model, dm = load_run(ckpt)
    dm.setup()
    images, labels = dm.images("test"), dm.labels("test")
    x = dm.model_input(images[labels[:, EYEGLASSES] == 0])
    before, after = shifted_decodes(model, x, saved["vector"], [0.0, 1.0])
    darker = before - after  # > 0 where adding the vector darkened a pixel
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[GLASSES] = True
    in_region = darker[..., region].mean().item()
    elsewhere = darker[..., ~region].abs().mean().item()
    assert in_region > 0.2, f"the glasses region darkened by only {in_region:.3f}"
    assert in_region > 5 * elsewhere, f"{in_region:.3f} in the region vs {elsewhere:.3f} outside"


def test_class_vector_moves_fours_toward_nines(tmp_path, make_cfg):
    train(make_cfg(["trainer.max_epochs=6", "logger=none", "test=false"]))  # bundled digits
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "attr"
    cfg = compose_config("attr", [f"ckpt_path={ckpt}", "attribute=9", "source=4",
                                  "alphas=[0,0.5,1]"], out)
    paths = attribute_vector_figure(cfg)
    assert paths["figure"] == out / "attr_4_to_9.png" and paths["figure"].is_file()
    saved = torch.load(paths["vector"])
    assert (saved["attribute"], saved["source"]) == ("9", "4")

    _, model, dm = load_run(ckpt)
    dm.setup()
    images, labels = dm.images("test"), dm.labels("test")
    fours, nine = dm.model_input(images[labels == 4]), dm.model_input(images[labels == 9]).mean(0)
    before, after = shifted_decodes(model, fours, saved["vector"], [0.0, 1.0])
    distance_before = (before - nine).pow(2).flatten(1).sum(1).mean()
    distance_after = (after - nine).pow(2).flatten(1).sum(1).mean()
    assert distance_after < 0.6 * distance_before

    with pytest.raises(FileExistsError, match="attr_4_to_9"):
        attribute_vector_figure(cfg)
    with pytest.raises(ValueError, match=r"'Eyeglasses' is not an attribute.*'0', '1'"):
        attribute_vector_figure(compose_config(
            "attr", [f"ckpt_path={ckpt}", "attribute=Eyeglasses"], tmp_path / "attr2"))
