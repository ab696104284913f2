"""The GPU paths: one GPU, the dataset on the GPU, mixed precision, DDP on two GPUs. Skipped on
machines without (enough) CUDA GPUs; `pytest -m gpu` runs only these."""

import math

import pytest
import torch
from hydra.utils import instantiate

from helpers.markers import run_if
from vaelab.train import train

pytestmark = pytest.mark.integration

ON_GPU = ["trainer=gpu", "trainer.accelerator=gpu", "trainer.max_epochs=2", "logger=none"]


@pytest.mark.parametrize("_", [pytest.param(0, marks=run_if(min_gpus=1))])
def test_one_gpu_trains_and_tests(make_cfg, _):
    metrics = train(make_cfg(ON_GPU))
    assert math.isfinite(metrics["test/elbo"]) and metrics["val/elbo"] > -40


@pytest.mark.parametrize("_", [pytest.param(0, marks=run_if(min_gpus=1))])
def test_the_dataset_on_the_gpu_serves_batches_without_copies(make_cfg, _):
    cfg = make_cfg([*ON_GPU, "data.on_device=true"])
    metrics = train(cfg)
    assert math.isfinite(metrics["test/elbo"])
    import lightning as L

    datamodule = instantiate(cfg.data)
    trainer = L.Trainer(accelerator="gpu", devices=1, logger=False, max_epochs=1)
    datamodule.trainer = trainer
    datamodule.setup("fit")
    assert datamodule.images("train").is_cuda
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.is_cuda and images.dtype == torch.uint8


@pytest.mark.parametrize("precision", [
    pytest.param("16-mixed", marks=run_if(min_gpus=1)),
    pytest.param("bf16-mixed", marks=run_if(min_gpus=1, bf16=True)),
])
def test_mixed_precision_trains_to_a_finite_elbo(make_cfg, precision):
    metrics = train(make_cfg([*ON_GPU, f"trainer.precision={precision}"]))
    assert math.isfinite(metrics["test/elbo"]) and metrics["val/elbo"] > -40


@pytest.mark.parametrize("_", [pytest.param(0, marks=run_if(min_gpus=2))])
def test_ddp_on_two_gpus_writes_one_run_directory(train_cli, tmp_path, _):
    train_cli(["trainer=ddp", "trainer.devices=2", "trainer.max_epochs=1", "logger=csv"],
              timeout=300)
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()


@pytest.mark.parametrize("_", [pytest.param(0, marks=run_if(min_gpus=1, bf16=True))])
def test_the_hierarchy_trains_in_bf16_with_compiled_cells_and_the_ema(make_cfg, _):
    metrics = train(make_cfg([*ON_GPU, "model=hvae", "model/ladder=residual",
                              "model.ladder.compile=true", "trainer.precision=bf16-mixed",
                              "data.on_device=true", "callbacks=[default,ema,skip_updates]",
                              "callbacks.progress=null", "callbacks.model_summary=null"]))
    assert math.isfinite(metrics["test/elbo"]) and metrics["train/skipped_updates"] == 0
