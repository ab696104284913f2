"""A run directory belongs to one run: locked while in use, never changed by a refused or failed
attempt, and an attempt that really starts keeps the earlier one's files."""

import json
import os
import re
import shutil
import signal
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from vaelab.run_dir import RunDir, RunDirLocked, RunLock
from vaelab.sweep import read_job
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
    # another latent size: the checkpoint's weights do not fit, so the attempt never starts,
    # and the error names the setting that differs
    with pytest.raises(ValueError, match=r"does not fit .*model\.latent_dim \(2 -> 3\)"):
        train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto", "model.latent_dim=3"]))
    assert snapshot(finished_run) == before
    assert not (finished_run / "failed.json").exists()
    assert not list(finished_run.glob("*.attempt*"))


def test_a_resume_with_other_data_or_seed_is_refused_and_adds_no_logger_files(make_cfg,
                                                                             tmp_path):
    """Issue 21: a changed seed or batch size was half-applied (the checkpoint's random states
    and data position restored, the rest changed), and a refused resume added logger files."""
    csv_run = [*RUN, "logger=csv"]
    train(make_cfg([*csv_run, "trainer.max_epochs=1"]))
    finished = tmp_path / "run"
    before = snapshot(finished)
    for changed, named in (("seed=7", "seed (12345 -> 7)"),
                           ("data.batch_size=32", "data.batch_size (64 -> 32)"),
                           ("model.latent_dim=3", "model.latent_dim (2 -> 3)")):
        with pytest.raises(ValueError, match=re.escape(named)):
            train(make_cfg([*csv_run, "trainer.max_epochs=2", "resume=auto", changed]))
        assert snapshot(finished) == before, changed
    # where the data is may change (it moved): that continues
    train(make_cfg([*csv_run, "trainer.max_epochs=2", "resume=auto", "data.eval_batch_size=100"]))


def test_an_optimized_metric_that_is_never_logged_stops_before_training(make_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"optimized_metric=val/nothing is not logged by this "
                                         r"run; it logs \[.*'val/elbo'"):
        train(make_cfg([*RUN, "optimized_metric=val/nothing"]))
    assert not (tmp_path / "run" / "checkpoints").exists()  # found out before any step
    with pytest.raises(ValueError, match="optimized_metric=train/nothing"):
        train(make_cfg([*RUN, "optimized_metric=train/nothing"], output_dir=tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "failed.json").read_text())["started"]


def test_a_resume_that_starts_keeps_the_earlier_attempts_files(make_cfg, finished_run):
    first_metrics = (finished_run / "metrics.json").read_bytes()
    metrics = train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto"]))
    assert (finished_run / "metrics.attempt1.json").read_bytes() == first_metrics
    assert json.loads((finished_run / "metrics.json").read_text())["val/elbo"] == \
        pytest.approx(metrics["val/elbo"])
    assert (finished_run / "config_resolved.attempt1.yaml").is_file()
    log = (finished_run / "train.log").read_text()
    assert log.count("run directory:") == 2  # both attempts, appended


def test_a_run_refused_before_it_starts_leaves_one_small_record(make_cfg, tmp_path):
    with pytest.raises(ValueError, match="model.latent_dim=0"):
        train(make_cfg([*RUN, "model.latent_dim=0"]))
    run = RunDir(tmp_path / "run")
    # failed.json alone: no config files, no log, no lock (issue 22: refused runs left folders)
    assert sorted(p.name for p in run.path.iterdir()) == ["failed.json"]
    record = json.loads(run.failed.read_text())
    assert record["error_type"] == "ValueError" and not record["interrupted"]
    assert not record["started"] and "Traceback" in record["traceback"]
    assert "model.latent_dim=0" in record["message"]


class FailsAtEpochEnd(L.Callback):
    """Test helper: an error once training has started (a NaN, a full disk)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise OSError(28, "No space left on device")


def test_a_failed_attempt_never_demotes_a_finished_run(make_cfg, finished_run):
    metrics = (finished_run / "metrics.json").read_bytes()
    with pytest.raises(OSError, match="No space"):
        train(make_cfg([*RUN, "trainer.max_epochs=3", "resume=auto",
                        "+callbacks.fail._target_=test_run_dir.FailsAtEpochEnd"]))
    assert (finished_run / "metrics.json").read_bytes() == metrics  # still its result
    assert json.loads((finished_run / "failed.json").read_text())["started"]
    job = read_job(finished_run)
    assert job.status == "completed" and "a later attempt failed: OSError" in job.error


def test_a_moved_run_continues_with_its_own_best_checkpoint(make_cfg, tmp_path):
    """Issue 21 item 4: the best checkpoint's old absolute path failed the resumed run."""
    train(make_cfg([*RUN, "trainer.max_epochs=2"], output_dir=tmp_path / "before"))
    moved = tmp_path / "after"
    shutil.move(tmp_path / "before", moved)
    best = {p.name for p in (moved / "checkpoints").glob("epoch_*.ckpt")}
    # a finished run, resumed: it only tests again, its best checkpoint found where it is now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tested = train(make_cfg([*RUN, "trainer.max_epochs=2", "resume=auto"], output_dir=moved))
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]
    assert Path(tested["tested_checkpoint"]) == moved / "checkpoints" / best.pop()
    metrics = train(make_cfg([*RUN, "trainer.max_epochs=3", "resume=auto"], output_dir=moved))
    assert Path(metrics["tested_checkpoint"]).parent == moved / "checkpoints"
    assert json.loads((moved / "metrics.json").read_text())["test/elbo"] == metrics["test/elbo"]
    # the moved run's best score was kept: one best epoch checkpoint, not a stale one beside it
    kept = {p.name for p in (moved / "checkpoints").glob("epoch_*.ckpt")}
    assert len(kept) == 1 and Path(metrics["best_checkpoint"]).name in kept


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
