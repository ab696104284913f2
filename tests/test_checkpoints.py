"""Checkpoints: last.ckpt is the newest state, loading is safe, saves leave no debris, a resumed
run uses the configured optimiser and reports whole epochs."""

import json
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from helpers.configs import FAST, steps_per_epoch
from vaelab.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint
from vaelab.configs import compose_config
from vaelab.eval import evaluate
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["logger=csv", "model.latent_dim=2", "callbacks.latent_viz=null",
       "callbacks.lr_monitor=null"]


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_last_checkpoint_is_the_final_epoch_even_when_the_metric_stopped_improving(make_cfg,
                                                                                  tmp_path):
    # mode=min makes the "best" val/elbo the worst: after epoch 1 it never improves again
    cfg = make_cfg([*RUN, "trainer.max_epochs=6", "callbacks.model_checkpoint.mode=min",
                    "callbacks.step_checkpoint=null", "test=false"])
    steps = steps_per_epoch(cfg)
    train(cfg)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["epoch_001.ckpt", "last.ckpt"]
    assert ckpt(checkpoints / "last.ckpt")["global_step"] == 6 * steps
    assert ckpt(checkpoints / "epoch_001.ckpt")["global_step"] == steps


class LastCheckpointSteps(L.Callback):
    """Test helper: the optimiser step last.ckpt holds at the end of every epoch."""

    seen: list = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        self.seen.append(ckpt(path)["global_step"] if path.exists() else None)


def test_last_checkpoint_is_written_after_every_epoch(make_cfg):
    """Issue 21 item 2: Lightning 2.6 resets the epoch's batch counter after the hook that
    saved last.ckpt, so it was written only when that counter happened to be 0."""
    LastCheckpointSteps.seen = []
    cfg = make_cfg([*RUN, "trainer.max_epochs=4", "callbacks.step_checkpoint=null", "test=false",
                    "+callbacks.watch._target_=test_checkpoints.LastCheckpointSteps"])
    train(cfg)
    assert LastCheckpointSteps.seen == [None, *(k * steps_per_epoch(cfg) for k in (1, 2, 3))]


class RunsCode:
    """A pickle that runs code when unpickled: what a crafted .ckpt carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": RunsCode(marker)}, path)
    return path, marker


def test_a_crafted_checkpoint_is_refused_without_running_its_code(crafted):
    path, marker = crafted
    with pytest.raises(CheckpointError, match="refusing to load") as error:
        load_checkpoint(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(error.value)  # never torch's advice to run it


def test_eval_and_resume_refuse_a_crafted_checkpoint(crafted, make_cfg, tmp_path):
    path, marker = crafted
    with pytest.raises(CheckpointError):
        evaluate(compose_config("eval", [*FAST[:2], f"ckpt_path={path}", "fid.enabled=false"],
                                tmp_path / "eval"))
    with pytest.raises(CheckpointError):
        train(make_cfg([*RUN, f"ckpt_path={path}"]))
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before anything ran


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_resume_auto_skips_a_corrupt_last_checkpoint_and_continues_from_an_intact_one(
        make_cfg, tmp_path, caplog):
    train(make_cfg([*RUN, "trainer.max_epochs=1", "test=false"]))
    checkpoints = tmp_path / "run" / "checkpoints"
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a truncated file
    with caplog.at_level("INFO"):
        cfg = make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto", "test=false"])
        metrics = train(cfg)
    assert "skipping damaged checkpoints: last.ckpt" in caplog.text
    assert f"continuing from {checkpoints / 'epoch_001.ckpt'}" in caplog.text
    assert ckpt(last)["global_step"] == 2 * steps_per_epoch(cfg) and metrics["val/elbo"] < 0
    for path in checkpoints.glob("*.ckpt"):  # nothing intact left: refused, naming the files
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"every checkpoint in .* is damaged"):
        train(make_cfg([*RUN, "trainer.max_epochs=3", "resume=auto"]))


def test_resume_auto_in_a_new_directory_says_it_starts_afresh(make_cfg, caplog):
    with caplog.at_level("INFO"):
        train(make_cfg([*RUN, "trainer.max_epochs=1", "resume=auto", "test=false"]))
    assert "no checkpoint in" in caplog.text and "starting a new run there" in caplog.text


def test_a_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    def full_disk(self, checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full_disk)
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises(OSError, match="No space"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert target.read_bytes() == b"the previous checkpoint"


def test_resume_uses_the_configured_learning_rate_and_says_so(make_cfg, tmp_path, caplog):
    first = make_cfg([*RUN, "trainer.max_epochs=1", "test=false"])
    train(first)
    with caplog.at_level("INFO"):
        train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto",
                        "model.optimizer.lr=1e-4", "test=false"]))
    assert f"lr {first.model.optimizer.lr:g} -> 0.0001" in caplog.text
    last = ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert "lr: 0.0001" in (tmp_path / "run" / "config_resolved.yaml").read_text()


def test_resume_keeps_a_scheduled_learning_rate_in_proportion(make_cfg, tmp_path):
    # Burda's schedule has decayed the rate once after epoch 1; a new base rate keeps that decay
    burda = [*RUN, "model/scheduler=burda", "test=false"]
    train(make_cfg([*burda, "trainer.max_epochs=2"]))
    train(make_cfg([*burda, "trainer.max_epochs=3", "resume=auto", "model.optimizer.lr=2e-3"]))
    group = ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")["optimizer_states"][0][
        "param_groups"][0]
    assert group["initial_lr"] == pytest.approx(2e-3)
    assert group["lr"] == pytest.approx(2e-3 * 0.7196856730011519)


def test_a_final_epoch_resumed_mid_way_reports_the_whole_epochs_means(make_cfg, tmp_path):
    from test_resume import SendSigterm  # noqa: F401  (the callback the config names)

    no_periodic = [*RUN, "callbacks.step_checkpoint=null"]
    with pytest.raises(SystemExit):
        train(make_cfg([*no_periodic, "trainer.max_epochs=2", "test=false",
                        "+callbacks.sigterm._target_=test_resume.SendSigterm",
                        "+callbacks.sigterm.at_step=27"]))  # inside the last epoch
    resumed = train(make_cfg([*no_periodic, "trainer.max_epochs=2", "resume=auto",
                              "test=false"]))
    whole = train(make_cfg([*no_periodic, "trainer.max_epochs=2", "test=false"],
                           output_dir=tmp_path / "whole"))
    for key in ("train/loss", "train/elbo", "train/kl"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-4), key
    record = json.loads((tmp_path / "run" / "failed.attempt1.json").read_text())
    assert record["interrupted"]
