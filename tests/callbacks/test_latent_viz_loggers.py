"""LatentViz images reach W&B (offline) and MLflow (sqlite): slow, as both start a backend."""

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from PIL import Image

from vaelab.configs import compose_config


@pytest.fixture
def drawer(tmp_path):
    return instantiate(compose_config("train", [], tmp_path / "run").callbacks.latent_viz)


@pytest.mark.slow
def test_images_reach_mlflow_as_png_artifacts(drawer, tmp_path):
    logger = MLFlowLogger(experiment_name="viz", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                          artifact_location=str(tmp_path / "artifacts"))
    drawer.publish("latent_manifold", torch.rand(3, 20, 30), [logger], step=7, stem="epoch_002")
    (png,) = (tmp_path / "artifacts").rglob("epoch_002.png")
    assert png.parent.parts[-2:] == ("figures", "latent_manifold")
    assert Image.open(png).size == (30, 20)


@pytest.mark.slow
def test_images_reach_wandb_as_media(drawer, tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="vaelab-test")
    drawer.publish("latent_scatter", torch.rand(3, 20, 30), [logger], step=7, stem="epoch_002")
    logger.experiment.finish()
    (png,) = (tmp_path / "wandb").rglob("media/images/figures/latent_scatter_*.png")
    assert Image.open(png).size == (30, 20)
