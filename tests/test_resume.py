"""Resuming runs (ckpt_path, resume=auto, after SIGTERM/SIGKILL) and same seed -> same numbers."""

import json
import logging
import os
import signal
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers.configs import steps_per_epoch
from vaelab.checkpoints import refuse_other_runs, resume_from
from vaelab.data.in_memory import TensorBatchLoader
from vaelab.run_dir import RunDir
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["logger=csv", "model.latent_dim=2", "callbacks.lr_monitor=null"]
# A resumed run restores weights, optimiser, scheduler, loop position, data order and random
# generator states, so it repeats the uninterrupted run's arithmetic: only float noise remains.
TOLERANCE = 1e-4


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_run(a: dict, b: dict, keys=("val/elbo", "train/loss", "test/elbo")) -> None:
    for key in keys:
        assert a[key] == pytest.approx(b[key], abs=TOLERANCE), key


def test_same_seed_same_metrics_other_seed_other_metrics(make_cfg, tmp_path):
    runs = [train(make_cfg([*RUN, "trainer.max_epochs=1", f"seed={seed}"],
                           output_dir=tmp_path / f"run{i}"))
            for i, seed in enumerate((1, 1, 2))]
    for run in runs:
        run.pop("best_checkpoint"), run.pop("tested_checkpoint")
    assert runs[0] == runs[1]
    assert runs[0]["val/elbo"] != runs[2]["val/elbo"]


def test_resume_2_to_4_epochs_equals_an_uninterrupted_run(make_cfg, tmp_path, caplog):
    plateau = [*RUN, "model/scheduler=plateau"]
    train(make_cfg([*plateau, "trainer.max_epochs=2"], output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.INFO):
        resumed = train(make_cfg([*plateau, "trainer.max_epochs=4", f"ckpt_path={last}"],
                                 output_dir=tmp_path / "resumed"))
    # continuing into a new run directory is what ckpt_path= is for: no warning about it
    assert "dirpath has changed" not in caplog.text
    cfg = make_cfg([*plateau, "trainer.max_epochs=4"], output_dir=tmp_path / "whole")
    whole, steps = train(cfg), steps_per_epoch(cfg)
    assert_same_run(resumed, whole)
    a, b = (ckpt(tmp_path / d / "checkpoints" / "last.ckpt") for d in ("resumed", "whole"))
    assert a["global_step"] == b["global_step"] == 4 * steps
    # the optimiser continued (Adam's step count) and so did the scheduler
    assert a["optimizer_states"][0]["state"][0]["step"] == 4 * steps
    assert a["lr_schedulers"] == b["lr_schedulers"]
    # the first run's results are untouched
    assert ckpt(last)["global_step"] == 2 * steps


class SendSigterm(L.Callback):
    """Test helper: the process receives SIGTERM after optimiser step `at_step`."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoints_mid_epoch_and_resume_auto_continues(make_cfg, tmp_path, caplog):
    run_dir = tmp_path / "run"
    no_periodic = [*RUN, "callbacks.last_checkpoint=null", "callbacks.step_checkpoint=null"]
    with pytest.raises(SystemExit) as stopped:
        train(make_cfg([*no_periodic, "trainer.max_epochs=2", "+callbacks.sigterm._target_="
                        "test_resume.SendSigterm", "+callbacks.sigterm.at_step=7"]))
    assert stopped.value.code == 143  # 128 + SIGTERM: "terminated", never success
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert ckpt(interrupted)["global_step"] == 7
    record = json.loads((run_dir / "failed.json").read_text())
    assert record["interrupted"] and record["checkpoint"] == str(interrupted)
    assert not (run_dir / "metrics.json").exists()

    with caplog.at_level(logging.INFO):
        resumed = train(make_cfg([*no_periodic, "trainer.max_epochs=2", "resume=auto"]))
    assert f"Restored all states from the checkpoint at {interrupted}" in caplog.text
    whole = train(make_cfg([*no_periodic, "trainer.max_epochs=2"], output_dir=tmp_path / "w"))
    assert_same_run(resumed, whole)
    # the interrupted attempt's config and record are kept beside the resumed one's
    assert (run_dir / "config_resolved.attempt1.yaml").is_file()
    assert (run_dir / "failed.attempt1.json").is_file() and not (run_dir / "failed.json").exists()
    assert "interrupted.ckpt" in (run_dir / "config_resolved.yaml").read_text()
    assert not interrupted.exists()  # a finished run removes its stale interrupt checkpoint


def test_sigkilled_run_resumes_from_its_last_checkpoint(train_cli, make_cfg, tmp_path):
    run_dir = tmp_path / "killed"
    every3 = [*RUN, "callbacks.step_checkpoint.every_n_train_steps=3"]
    proc = train_cli([*every3, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"], wait=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed
    out, _ = proc.communicate()
    assert last.exists(), f"the run wrote no checkpoint:\n{out[-3000:]}"
    cfg = make_cfg([*every3, "trainer.max_epochs=2", "resume=auto"], output_dir=run_dir)
    steps, step = steps_per_epoch(cfg), ckpt(last)["global_step"]  # written atomically
    assert 0 < step < 2 * steps and step % steps, "not killed mid-epoch"

    resumed = train(cfg)
    whole = train(make_cfg([*every3, "trainer.max_epochs=2"], output_dir=tmp_path / "whole"))
    assert_same_run(resumed, whole)
    assert ckpt(last)["global_step"] == 2 * steps


def test_a_run_killed_after_epoch_k_resumes_from_epoch_k_like_the_uninterrupted_run(
        train_cli, make_cfg, tmp_path):
    """Issue 21 item 2: killed (SIGKILL) after its 2nd epoch, a run without step checkpoints
    loses nothing of epochs 1-2, and resume=auto (plateau scheduler included, which Lightning
    steps after the epoch-end checkpoints) repeats the uninterrupted run."""
    run_dir = tmp_path / "killed"
    epochs = [*RUN, "callbacks.step_checkpoint=null", "model/scheduler=plateau",
              "model.scheduler.patience=0", "test=false"]
    proc = train_cli([*epochs, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"], wait=False)
    for line in proc.stdout:
        if "epoch 3/50 done" in line:  # epoch 2 ended, and epoch 3's start saved last.ckpt
            break
    proc.kill()
    proc.communicate()
    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = make_cfg([*epochs, "trainer.max_epochs=4", "resume=auto"], output_dir=run_dir)
    assert ckpt(last)["global_step"] >= 2 * steps_per_epoch(cfg)

    resumed = train(cfg)
    whole = train(make_cfg([*epochs, "trainer.max_epochs=4"], output_dir=tmp_path / "whole"))
    assert_same_run(resumed, whole, keys=("val/elbo", "train/loss"))
    a, b = (ckpt(d / "checkpoints" / "last.ckpt") for d in (run_dir, tmp_path / "whole"))
    assert a["lr_schedulers"] == b["lr_schedulers"]
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == \
        b["optimizer_states"][0]["param_groups"][0]["lr"]


def test_loader_resumes_mid_epoch_where_training_stopped():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    done = {"n": 0}
    loader = TensorBatchLoader(images, torch.zeros(10), batch_size=2, shuffle=True, seed=3,
                               batches_done=lambda: done["n"])
    full = [x.flatten().tolist() for x, _ in loader]
    done["n"] = 3
    state = loader.state_dict()
    fresh = TensorBatchLoader(images, torch.zeros(10), batch_size=2, shuffle=True, seed=3)
    fresh.load_state_dict(state)
    assert [x.flatten().tolist() for x, _ in fresh] == full[3:]
    assert [x.flatten().tolist() for x, _ in fresh] == full  # only the resumed epoch skips


def test_resume_refuses_mistakes(tmp_path, make_cfg):
    run = RunDir(tmp_path)
    with pytest.raises(ValueError, match="resume must be null or auto"):
        resume_from(run, None, "latest", True)
    with pytest.raises(ValueError, match="not both"):
        resume_from(run, "a.ckpt", "auto", True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resume_from(run, str(tmp_path / "missing.ckpt"), None, True)
    assert resume_from(run, None, "auto", True) is None  # nothing to resume: start afresh
    train(make_cfg([*RUN, "trainer.max_epochs=1", "test=false"], output_dir=tmp_path))
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    assert resume_from(run, None, "auto", True) == last
    # another run's directory is never trained into, except to continue that run
    with pytest.raises(FileExistsError, match="resume=auto"):
        refuse_other_runs(run, None)
    with pytest.raises(FileExistsError):
        refuse_other_runs(run, str(tmp_path / "elsewhere" / "last.ckpt"))
    refuse_other_runs(run, last)
