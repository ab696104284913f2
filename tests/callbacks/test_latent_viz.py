"""The LatentViz callback in a real training run, and how it treats each logger."""

import re
import warnings
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers.configs import FAST, steps_per_epoch
from vaelab.configs import compose_config
from vaelab.train import train
from vaelab.viz import FIGURES, HIERARCHICAL

pytestmark = pytest.mark.integration

#: what a flat VAE draws: every figure but those of a hierarchy's layers
FLAT_FIGURES = [name for name in FIGURES if name not in HIERARCHICAL]

DIGIT = 8  # the digits data are 8x8
# grids narrower than figures.min_width (400 px) are enlarged by a whole factor: the 8 x 8
# reconstructions grid (8 px tiles, 2 px padding) is 82 px -> 410
RECONSTRUCTIONS_PX = (8 * (DIGIT + 2) + 2) * 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 3-epoch digits run drawing every 2nd epoch: figures at epoch 2 and at the end (3), named
    by the 1-based epoch the console shows."""
    out = tmp_path_factory.mktemp("latent_viz") / "run"
    cfg = compose_config("train", [*FAST, "trainer.max_epochs=3", "logger=tensorboard",
                                   "test=false", "callbacks.latent_viz.every_n_epochs=2"], out)
    train(cfg)
    return out


def test_callback_writes_a_png_per_figure_every_n_epochs_and_at_the_end(run_dir):
    for name in FLAT_FIGURES:
        files = sorted(p.name for p in (run_dir / "figures" / name).iterdir())
        assert files == ["epoch_002.png", "epoch_003.png"], name
    grid = Image.open(run_dir / "figures" / "reconstructions" / "epoch_003.png")
    assert grid.size == (RECONSTRUCTIONS_PX, RECONSTRUCTIONS_PX)
    # every picture is at least min_width wide, grid pixels repeated, never interpolated
    assert all(Image.open(p).width >= 400 for p in (run_dir / "figures").rglob("*.png"))
    assert set(grid.crop((10, 10, 15, 15)).getdata()) == {grid.getpixel((10, 10))}
    # the manifold is framed by axes (labels, ticks): larger than its 136 px grid, upscaled
    manifold = Image.open(run_dir / "figures" / "latent_manifold" / "epoch_002.png")
    assert manifold.width >= 3 * 136 + 100


def test_callback_logs_every_figure_to_tensorboard(run_dir):
    (event_dir,) = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents*")}
    events = EventAccumulator(str(event_dir), size_guidance={"images": 0}).Reload()
    assert set(events.Tags()["images"]) == {f"figures/{name}" for name in FLAT_FIGURES}
    manifold = events.Images("figures/latent_manifold")
    steps = steps_per_epoch(OmegaConf.load(run_dir / "config_resolved.yaml"))
    assert [e.step for e in manifold] == [2 * steps, 3 * steps]
    png = Image.open(run_dir / "figures" / "latent_manifold" / "epoch_002.png")
    assert (manifold[-1].width, manifold[-1].height) == png.size


class NoImagesLogger(Logger):
    """A logger LatentViz has never heard of."""

    name, version = "no_images", 0

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


@pytest.fixture
def drawer(tmp_path):
    cfg = compose_config("train", [], tmp_path)
    return instantiate(cfg.callbacks.latent_viz)


def test_unknown_logger_is_skipped_with_one_warning_and_the_png_still_written(drawer, tmp_path):
    image = torch.rand(3, 10, 12)
    loggers = [NoImagesLogger(), CSVLogger(tmp_path)]
    with pytest.warns(UserWarning, match="cannot send images to NoImagesLogger") as record:
        path = drawer.publish("reconstructions", image, loggers, step=5, stem="epoch_000")
    assert len(record) == 1  # the CSV logger, which takes no images, is skipped silently
    assert path == tmp_path / "figures" / "reconstructions" / "epoch_000.png"
    assert Image.open(path).size == (12, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per logger type, not every epoch
        drawer.publish("reconstructions", image, loggers, step=6, stem="epoch_001")


def test_an_existing_png_is_kept(drawer, tmp_path):
    path = drawer.publish("prior_samples", torch.zeros(3, 4, 4), [], step=0, stem="epoch_000")
    with pytest.warns(UserWarning, match="exists already"):
        drawer.publish("prior_samples", torch.ones(3, 4, 4), [], step=0, stem="epoch_000")
    assert Image.open(path).getpixel((0, 0)) == (0, 0, 0)


def test_a_figure_is_written_whole_or_not_at_all(drawer, tmp_path, monkeypatch):
    """Issue 21 item 6: a kill while a PNG was written left a 0-byte file that the resumed run
    kept."""
    import vaelab.viz.images

    real = vaelab.viz.images.save_image

    def killed_mid_write(tensor, fp, format=None):
        Path(fp).write_bytes(b"")  # what the file holds when the process dies here
        raise KeyboardInterrupt

    monkeypatch.setattr(vaelab.viz.images, "save_image", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        drawer.publish("prior_samples", torch.ones(3, 4, 4), [], step=0, stem="epoch_000")
    folder = tmp_path / "figures" / "prior_samples"
    assert list(folder.iterdir()) == []  # no empty epoch_000.png, no temporary file
    monkeypatch.setattr(vaelab.viz.images, "save_image", real)
    (folder / "epoch_001.png").write_bytes(b"")  # left by an older vaelab: drawn again
    for stem in ("epoch_000", "epoch_001"):
        path = drawer.publish("prior_samples", torch.ones(3, 4, 4), [], step=0, stem=stem)
        assert Image.open(path).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("override", [
    "callbacks.latent_viz.figures.draw=[latent_manifold,bogus]",
    "callbacks.latent_viz.figures.interpolation.method=cubic",
    "callbacks.latent_viz.figures.latent_scatter.method=umap",
    "callbacks.latent_viz.figures.latent_manifold.grid_size=big",
    "callbacks.latent_viz.figures.reconstructions.nrow=2",
    "figures.latent_manifold.grid_size=big",  # vaelab-viz's own figure options
])
def test_bad_figure_options_are_refused_when_the_config_is_composed(tmp_path, override):
    name = "viz" if override.startswith("figures.") else "train"
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=re.escape(key)):
        compose_config(name, [override, "ckpt_path=x.ckpt"] if name == "viz" else [override],
                       tmp_path)


@pytest.mark.parametrize("override, message", [
    ("callbacks.latent_viz.figures.latent_manifold.dims=[0,8]", "latent_manifold.dims"),
    ("callbacks.latent_viz.figures.latent_traversal.dims=[1,1]", "latent_traversal.dims"),
])
def test_latent_dims_outside_the_model_are_named(tmp_path, override, message):
    drawer = instantiate(compose_config("train", [override], tmp_path).callbacks.latent_viz)
    with pytest.raises(ValueError, match=message):
        drawer.figures.select(latent_dim=8)


def test_bad_figure_options_stop_training_before_the_first_step(make_cfg, tmp_path):
    with pytest.raises(ValueError, match="latent_manifold.dims"):
        train(make_cfg(["callbacks.latent_viz.figures.latent_manifold.dims=[0,8]",
                        "logger=none"]))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_one_dimensional_latent_space_draws_what_it_can(tmp_path):
    drawer = instantiate(compose_config("train", [], tmp_path).callbacks.latent_viz)
    with pytest.warns(UserWarning, match="need at least 2 latent dimensions"):
        figures = drawer.figures.select(latent_dim=1)
    assert set(FLAT_FIGURES) - set(figures) == {"latent_scatter", "latent_manifold"}
