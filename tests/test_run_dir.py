"""A run directory belongs to one run: locked while in use, never changed by a refused or failed
attempt, and an attempt that really starts keeps the earlier one's files."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from vaelab.run_dir import RunDir, RunDirLocked, RunLock
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["logger=none", "model.latent_dim=2", "callbacks.latent_viz=null"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (but the lock), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def finished_run(make_cfg, tmp_path) -> Path:
    train(make_cfg([*RUN, "trainer.max_epochs=1"]))
    return tmp_path / "run"


def test_a_refused_rerun_changes_nothing_in_the_finished_run(make_cfg, finished_run):
    before = snapshot(finished_run)
    assert ".hydra/config.yaml" in before and "train.log" in before
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train(make_cfg([*RUN, "trainer.max_epochs=3", "model.beta=4"]))
    assert snapshot(finished_run) == before  # not even .hydra/ or the log


def test_a_resume_that_fails_at_start_up_leaves_the_finished_run_as_it_was(make_cfg,
                                                                           finished_run):
    before = snapshot(finished_run)
    # another latent size: the checkpoint's weights do not fit, so the attempt never starts
    with pytest.raises(RuntimeError, match="size mismatch"):
        train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto", "model.latent_dim=3"]))
    assert snapshot(finished_run) == before
    assert not (finished_run / "failed.json").exists()
    assert not list(finished_run.glob("*.attempt*"))


def test_a_resume_that_starts_keeps_the_earlier_attempts_files(make_cfg, finished_run):
    first_metrics = (finished_run / "metrics.json").read_bytes()
    metrics = train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto"]))
    assert (finished_run / "metrics.attempt1.json").read_bytes() == first_metrics
    assert json.loads((finished_run / "metrics.json").read_text())["val/elbo"] == \
        pytest.approx(metrics["val/elbo"])
    assert (finished_run / "config_resolved.attempt1.yaml").is_file()
    log = (finished_run / "train.log").read_text()
    assert log.count("run directory:") == 2  # both attempts, appended


def test_a_failure_in_a_fresh_directory_is_recorded_with_its_traceback(make_cfg, tmp_path):
    with pytest.raises(ValueError, match="model.latent_dim=0"):
        train(make_cfg([*RUN, "model.latent_dim=0"]))
    run = RunDir(tmp_path / "run")
    record = json.loads(run.failed.read_text())
    assert record["error_type"] == "ValueError" and not record["interrupted"]
    assert "Traceback" in record["traceback"]
    assert (run.hydra / "overrides.yaml").is_file()  # so vaelab-report finds the job
    log = run.log("train").read_text()
    assert "model.latent_dim=0: give a whole number >= 1" in log and "Traceback" in log


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    run = RunDir(tmp_path / "run")
    with RunLock(run):
        with pytest.raises(RunDirLocked, match=f"in use by PID {os.getpid()}"):
            RunLock(run).acquire()
    RunLock(run).acquire()  # released on exit


def test_two_runs_in_one_directory_and_a_killed_holder(train_cli, make_cfg, tmp_path):
    run_dir = tmp_path / "shared"
    every3 = [*RUN, "callbacks.step_checkpoint.every_n_train_steps=3"]
    first = train_cli([*every3, "trainer.max_epochs=200", f"hydra.run.dir={run_dir}"],
                      wait=False)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "the first run wrote no checkpoint"

    # a second run into the same folder a moment later: refused, naming the holder
    out = train_cli([*every3, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}",
                     "resume=auto"], expect_ok=False)
    assert f"is in use by PID {first.pid}" in out

    os.killpg(first.pid, signal.SIGKILL)  # the holder dies without releasing anything
    first.communicate()
    assert (run_dir / ".lock").exists()  # the file stays; the kernel released the lock
    epochs = torch.load(last, weights_only=True)["epoch"] + 2
    train(make_cfg([*every3, f"trainer.max_epochs={epochs}", "resume=auto"], output_dir=run_dir))
    assert json.loads((run_dir / "metrics.json").read_text())["test/elbo"] < 0


def test_resuming_a_finished_run_tests_again_and_keeps_its_metrics(make_cfg, finished_run):
    earlier = json.loads((finished_run / "metrics.json").read_text())
    metrics = train(make_cfg([*RUN, "trainer.max_epochs=1", "resume=auto"]))
    # validated again (fresh posterior samples: the same model up to Monte-Carlo noise)
    assert metrics["val/elbo"] == pytest.approx(earlier["val/elbo"], abs=0.5)
    assert metrics["test/elbo"] == pytest.approx(earlier["test/elbo"], abs=1e-4)
    assert json.loads((finished_run / "metrics.attempt1.json").read_text()) == earlier
