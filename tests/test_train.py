"""End-to-end: training learns, every recipe runs, the run directory holds what it should."""

import logging
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate

from vaelab.configs import CONFIG_DIR
from vaelab.train import train

pytestmark = pytest.mark.integration

# The MNIST recipes; those of other data run on their fixtures in tests/data/.
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")
                     if "override /data: mnist" in p.read_text())


def val_elbo_at_init(cfg) -> float:
    L.seed_everything(cfg.seed)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    return trainer.validate(instantiate(cfg.model), datamodule=instantiate(cfg.data),
                            verbose=False)[0]["val/elbo"]


def test_training_on_digits_improves_the_validation_elbo(make_cfg):
    cfg = make_cfg(["trainer.max_epochs=3", "logger=none", "test=false"])
    before = val_elbo_at_init(cfg)
    after = train(cfg)["val/elbo"]
    # Measured: -45.4 nats at initialisation, -27.7 after 3 epochs (seed 12345).
    assert after > before + 12.0, (before, after)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_one_fast_dev_run_step(experiment, make_cfg, mnist_root):
    cfg = make_cfg([f"experiment={experiment}", "debug=fdr",
                    f"++data.data_dir={mnist_root}", "data.val_size=20", "data.batch_size=16"])
    metrics = train(cfg)
    assert {"train/loss", "test/elbo"} <= set(metrics)


def test_rerun_into_a_directory_with_checkpoints_is_refused(make_cfg, tmp_path):
    train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false"]))
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false"]))
    assert len(list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))) == 2  # still there


def test_vaelab_train_command_writes_a_complete_run_directory(tmp_path, train_cli):
    train_cli(["trainer.max_epochs=2"], timeout=300)
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "config_resolved.yaml").is_file() and (run / "metrics.json").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "csv").rglob("metrics.csv"))
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_small_data_trains_with_the_defaults(make_cfg, mnist_root, tmp_path, caplog):
    """MNIST-format data of 120 training images with data=mnist's defaults (5000 val images,
    batches of 128): a tenth is held out, with a line saying so, and each epoch trains the
    other 108 images as one short batch."""
    from vaelab.checkpoints import load_checkpoint

    cfg = make_cfg(["data=mnist", f"data.data_dir={mnist_root}", "trainer.max_epochs=2",
                    "logger=csv", "callbacks.latent_viz=null"])
    with caplog.at_level(logging.INFO, logger="vaelab"):
        metrics = train(cfg)
    assert "data.val_size=5000 is more than half of the 120 images of MNIST's training set: " \
           "holding out 12 (10%) instead" in caplog.text
    assert "108 train, 12 val, 40 test" in caplog.text
    assert "logging interval" not in caplog.text  # Lightning's, about logs vaelab does not make
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert metrics["test/elbo"] < 0
