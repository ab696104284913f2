"""Sweeps that go wrong: a SIGTERM'd sweep, damaged job files, a failed job under W&B, and a job's
checkpoint passed on the command line."""

import csv
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.commands import run_command
from vaelab.report import main as report_main
from vaelab.sweep import collect_jobs, read_job
from vaelab.train import train

pytestmark = pytest.mark.integration

TINY = ["trainer.accelerator=cpu", "logger=csv", "model.encoder.hidden_dims=[32]",
        "model.decoder.hidden_dims=[32]", "callbacks.latent_viz=null"]


def report_rows(sweep: Path) -> dict[str, dict]:
    report_main([str(sweep), "--no-model"])
    with open(sweep / "report" / "sweep.csv") as f:
        return {row["num"]: row for row in csv.DictReader(f)}


def test_a_sigterm_stops_the_sweep_with_143_and_the_report_says_what_did_not_run(
        train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train_cli(["-m", *TINY, "model.latent_dim=2,3,4", "trainer.max_epochs=500",
                      "callbacks.step_checkpoint.every_n_train_steps=3",
                      f"hydra.sweep.dir={sweep}"], wait=False)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("0_*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)  # what `kill`, or a scheduler's preemption, sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-2000:]
    assert "the sweep stops here" in out

    (job,) = sweep.glob("0_*")
    record = json.loads((job / "failed.json").read_text())
    assert record["interrupted"] and Path(record["checkpoint"]).name == "interrupted.ckpt"
    assert Path(record["checkpoint"]).is_file()
    rows = report_rows(sweep)
    assert rows["0"]["status"] == "interrupted" and "resume=auto" in rows["0"]["error"]
    assert rows["1"]["status"] == rows["2"]["status"] == "not run"
    assert "model.latent_dim=4" in rows["2"]["overrides"]
    markdown = (sweep / "report" / "sweep.md").read_text()
    assert "## Jobs that did not run" in markdown


def test_damaged_job_files_are_reported_and_the_report_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    for num, (name, content) in enumerate([("failed.json", b""),  # a full disk
                                           ("metrics.json", b'{"test/elbo": -3'),
                                           ("metrics.json", b'{"test/elbo": -30.0}')]):
        job = sweep / f"{num}_beta-{num}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
        (job / name).write_bytes(content)
    jobs = {job.num: job for job in collect_jobs(sweep)}
    assert jobs[0].status == "damaged" and "failed.json is damaged (0 bytes" in jobs[0].error
    assert jobs[1].status == "damaged" and "metrics.json is damaged" in jobs[1].error
    assert jobs[2].status == "completed"
    rows = report_rows(sweep)
    assert [rows[n]["status"] for n in ("0", "1", "2")] == ["damaged", "damaged", "completed"]


@pytest.mark.slow
def test_a_failed_job_leaves_the_next_job_its_own_wandb_run(train_cli, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    # the first job fails in training (its loss turns NaN), after its W&B run has started
    train_cli(["-m", *TINY, "logger=wandb", "model.optimizer.lr=1e30,1e-3",
               "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"], expect_ok=False,
              timeout=300)
    first, second = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert read_job(first).status == "failed" and read_job(second).status == "completed"
    runs = {job: list((job / "wandb").glob("offline-run-*")) for job in (first, second)}
    assert len(runs[first]) == 1 and len(runs[second]) == 1
    assert runs[first][0].name.split("-")[-1] != runs[second][0].name.split("-")[-1]
    # the second job's metrics went to its own run, not into the failed one
    assert list(runs[second][0].glob("run-*.wandb"))


@pytest.mark.slow  # 13-21 s: kept out of the default run's 15 minutes
def test_a_sweep_jobs_checkpoint_can_be_passed_as_ckpt_path(train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    train_cli(["-m", *TINY, "model.beta=0.5,2",
               "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"])
    job = next(sweep.glob("1_*"))
    assert job.name == "1_beta-2"  # no "=" or ",", which Hydra's grammar rejects in a value

    out = run_command(tmp_path, ["vaelab", "eval", f"ckpt_path={job}/checkpoints/last.ckpt",
                                 "fid.enabled=false", "iwae.num_samples=2",
                                 "callbacks.progress=null"])
    assert "test/nll" in out
    assert list((job / "eval").glob("*/metrics.json"))


@pytest.fixture
def finished_job(make_cfg, tmp_path) -> Path:
    """A finished one-epoch run, to copy into hand-made sweeps as their jobs."""
    train(make_cfg(["logger=none", "model.latent_dim=2", "callbacks.latent_viz=null",
                    "trainer.max_epochs=1"], output_dir=tmp_path / "finished"))
    return tmp_path / "finished"


def as_job(run: Path, sweep: Path, num: int, name: str) -> Path:
    """A copy of `run` as job `num` of `sweep`."""
    job = sweep / f"{num}_{name}"
    shutil.copytree(run, job)
    OmegaConf.save({"hydra": {"job": {"num": num}}}, job / ".hydra" / "hydra.yaml")
    return job


def test_the_report_marks_bad_jobs_damaged_and_goes_on(finished_job, tmp_path):
    """Issue 21 item 9: one truncated checkpoint or unreadable config stopped the report."""
    sweep = tmp_path / "sweep"
    as_job(finished_job, sweep, 0, "good")
    truncated = as_job(finished_job, sweep, 1, "truncated")
    best = next((truncated / "checkpoints").glob("epoch_*.ckpt"))
    best.write_bytes(best.read_bytes()[:500])
    (as_job(finished_job, sweep, 2, "yaml") / "config_resolved.yaml").write_text("model: [1\n")
    rows = report_rows_with_model(sweep)
    assert rows["0"]["status"] == "completed" and int(rows["0"]["active_units"]) >= 0
    assert rows["1"]["status"] == "damaged" and best.name in rows["1"]["error"]
    assert rows["2"]["status"] == "damaged" and "config_resolved.yaml" in rows["2"]["error"]
    assert report_rows(sweep)["2"]["status"] == "damaged"  # --no-model: the same


def report_rows_with_model(sweep: Path) -> dict[str, dict]:
    report_main([str(sweep), "--samples", "0"])
    with open(sweep / "report" / "sweep.csv") as f:
        return {row["num"]: row for row in csv.DictReader(f)}


def test_the_report_opens_checkpoints_only_inside_the_sweep(finished_job, tmp_path):
    """Issue 21 item 1: a job's metrics.json could name a checkpoint anywhere on disk."""
    sweep = tmp_path / "sweep"
    job = as_job(finished_job, sweep, 0, "elsewhere")
    outside = tmp_path / "outside.ckpt"
    shutil.move(next((job / "checkpoints").glob("epoch_*.ckpt")), outside)
    metrics = json.loads((job / "metrics.json").read_text())
    metrics["tested_checkpoint"] = metrics["best_checkpoint"] = str(outside)
    (job / "metrics.json").write_text(json.dumps(metrics))
    row = report_rows_with_model(sweep)["0"]
    assert row["status"] == "completed" and not row.get("active_units")  # never loaded


def test_a_new_sweep_into_an_earlier_sweeps_folder_changes_nothing(train_cli, finished_job,
                                                                  tmp_path):
    """Issue 21 item 11: the rerun trained its new jobs beside the old ones and rewrote
    multirun.yaml, and advised hydra.run.dir instead of hydra.sweep.dir."""
    sweep = tmp_path / "sweep"
    as_job(finished_job, sweep, 0, "latent_dim-2")
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    before = sorted(str(p.relative_to(sweep)) for p in sweep.rglob("*"))
    out = train_cli(["-m", *TINY, "model.latent_dim=2,3", "trainer.max_epochs=1",
                     f"hydra.sweep.dir={sweep}"], expect_ok=False)
    assert f"hydra.sweep.dir={sweep} holds an earlier sweep's jobs" in out
    assert "resume=auto" in out and "Traceback" not in out
    assert sorted(str(p.relative_to(sweep)) for p in sweep.rglob("*")) == before
    assert (sweep / "multirun.yaml").read_text() == "hydra:\n  mode: MULTIRUN\n"
    # continuing it (resume=auto) is what the folder is for
    from vaelab.sweep import SweepGuard

    SweepGuard().on_multirun_start(OmegaConf.create({"resume": "auto", "hydra": {
        "sweep": {"dir": str(sweep)}}}))
