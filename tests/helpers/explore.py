"""The explorer's test helpers: latent spaces of untrained models of any config, one trained
digits checkpoint shared by the test modules, image files and PNGs read back."""

import atexit
import base64
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.configs import FAST
from helpers.models import tiny_vae
from vaelab.builders import build
from vaelab.configs import compose_config
from vaelab.explore.space import LatentSpace


def space_of(overrides: list[str], folder: Path, num_points: int = 60,
             **options) -> LatentSpace:
    """A LatentSpace of the untrained model and the data of a train config (as composed from
    `overrides`); the weights are random, the interface is what is tested."""
    # the flat VAE with 8 dims, as these tests were written (digits' quickstart default is 2)
    eight = [] if any(o.startswith("model=") for o in overrides) else ["model.latent_dim=8"]
    cfg = compose_config("train", [*eight, *overrides], folder / "run")
    torch.manual_seed(0)
    model = build(cfg.model).eval()
    data = build(cfg.data)
    data.prepare_data()
    data.setup()
    model.setup_data(data)
    return LatentSpace(model, data, num_points=num_points, batch_size=64, **options)


def two_layer_model():
    """A 4-D model that says its code is two layers of 2 and resamples from a layer down by
    keeping the layers above: what a hierarchical model exposes to the explorer."""
    model = tiny_vae(latent_dim=4)
    model.latent_layers = [2, 2]

    def resample_from_layer(z, layer, generator, temperature):
        fresh = model.prior.sample(len(z), generator, temperature)
        keep = sum(model.latent_layers[:layer])
        return torch.cat([z[:, :keep], fresh[:, keep:]], dim=1)

    model.resample_from_layer = resample_from_layer
    return model


@functools.cache
def digits_checkpoint() -> Path:
    """last.ckpt of a digits VAE trained for 3 epochs (once per test session)."""
    from vaelab.train import train

    folder = Path(tempfile.mkdtemp(prefix="vaelab-explore-ckpt-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # 8 latent dims: the explorer orders them and marks the unused ones
    train(compose_config("train", [*FAST, "trainer.max_epochs=3", "model.latent_dim=8",
                                   "logger=none", "test=false", "callbacks.latent_viz=null"],
                         folder / "run"))
    return folder / "run" / "checkpoints" / "last.ckpt"


def image_file(width: int, height: int, mode: str = "RGB", fmt: str = "PNG",
               colour=None) -> bytes:
    """An image file's bytes: a bright square on a dark ground (or one `colour`)."""
    if colour is not None:
        image = Image.new(mode, (width, height), colour)
    else:
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 230
        image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def as_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_of(data_url: str) -> Image.Image:
    """The image of a `data:image/png;base64,...` URL."""
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix), data_url[:40]
    image = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):])))
    assert image.format == "PNG"
    return image
