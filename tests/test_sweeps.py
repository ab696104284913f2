"""Sweeps as Hydra multiruns (grid, joblib, Optuna), failure records, and vaelab-report."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vaelab.configs import compose_config, job_dirname
from vaelab.report import main as report_main
from vaelab.run_dir import failure_record, write_json
from vaelab.sweep import read_job

# A small, fast MLP VAE on the bundled digits (conftest keeps each process to one thread).
TINY = ["trainer.accelerator=cpu", "logger=csv", "model.encoder.hidden_dims=[64]",
        "model.decoder.hidden_dims=[64]"]


@pytest.fixture
def multirun(train_cli):
    """multirun(sweep_dir, *overrides) runs `vaelab-train -m` writing to sweep_dir."""

    def _run(sweep_dir: Path, *overrides: str, expect_ok: bool = True) -> str:
        return train_cli(["-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}"],
                         timeout=300, expect_ok=expect_ok)

    return _run


def read_table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "report" / "sweep.csv") as f:
        return list(csv.DictReader(f))


def test_beta_grid_sweep_and_report(tmp_path, multirun):
    sweep = tmp_path / "betas"
    multirun(sweep, "model.beta=0.25,1,8", "model.optimizer.lr=3e-3", "trainer.max_epochs=3")
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 3
    # one flat, readable folder per job, named by its swept overrides
    assert jobs == ["0_beta-0.25", "1_beta-1", "2_beta-8"]  # only the swept key

    report_main([str(sweep), "--samples", "4"])
    rows = read_table(sweep)
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert [float(r["beta"]) for r in rows] == [0.25, 1.0, 8.0]
    kl = [float(r["kl"]) for r in rows]
    assert kl[0] > kl[1] > kl[2], f"KL should fall as beta grows, got {kl}"
    # the effective beta is logged, and the active units follow the KL down
    assert [float(r["train/beta"]) for r in rows] == [0.25, 1.0, 8.0]
    active = [int(r["active_units"]) for r in rows]
    assert all(0 <= a <= 8 for a in active) and active[0] > active[2]
    for name in ("sweep.md", "rate_distortion.png", "elbo_vs_beta.png",
                 "active_units_vs_beta.png", "samples.png"):
        assert (sweep / "report" / name).stat().st_size > 0, name
    markdown = (sweep / "report" / "sweep.md").read_text()
    assert markdown.count("| completed |") == 3


def test_failed_jobs_are_recorded_and_the_rest_finish(tmp_path, multirun):
    """One job diverges (NaN loss), one has an invalid learning rate; joblib runs them in 2
    processes, the good job finishes, and the report lists both failures."""
    sweep = tmp_path / "failing"
    out = multirun(sweep, "model.optimizer.lr=1e-3,1e10,-1", "trainer.max_epochs=1",
                   "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", expect_ok=False)
    assert "train loss is nan" in out  # Hydra re-raises the first failure at the end
    # a job that has started but not finished yet: what a running sweep looks like on disk
    first = next(sweep.glob("0_*"))
    shutil.copytree(first / ".hydra", sweep / "3_still_running" / ".hydra")

    report_main([str(sweep), "--samples", "0"])
    rows = {r["job"].split("_", 1)[0]: r for r in read_table(sweep)}
    assert rows["0"]["status"] == "completed" and float(rows["0"]["elbo"]) < 0
    assert rows["1"]["status"] == "failed"
    assert "FloatingPointError" in rows["1"]["error"] and "nan" in rows["1"]["error"]
    assert rows["2"]["status"] == "failed" and "Invalid learning rate" in rows["2"]["error"]
    assert rows["3"]["status"] == "incomplete" and not rows["3"]["error"]
    markdown = (sweep / "report" / "sweep.md").read_text()
    assert "## Failed jobs" in markdown and "FloatingPointError" in markdown


def test_optuna_search_writes_its_results(tmp_path, multirun):
    sweep = tmp_path / "optuna"
    multirun(sweep, "hparams_search=optuna_beta_lr_latent", "hydra.sweeper.n_trials=3",
             "trainer.max_epochs=1")
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(results.best_params) == {"model.beta", "model.optimizer.lr", "model.latent_dim"}
    assert 0.25 <= results.best_params["model.beta"] <= 4.0
    trials = [p for p in sweep.iterdir() if (p / "metrics.json").is_file()]
    assert len(trials) == 3
    # Optuna maximised val/elbo: the best value is the best trial's
    report_main([str(sweep), "--no-model"])
    best = max(float(r["val/elbo"]) for r in read_table(sweep))
    assert results.best_value == pytest.approx(best)
    assert "## Optuna" in (sweep / "report" / "sweep.md").read_text()


def test_report_refuses_a_folder_without_jobs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report_main([str(tmp_path)])
    assert "no job folders" in capsys.readouterr().err


def test_job_folder_names_are_short_readable_and_valid_overrides():
    name = job_dirname(["model/kl_schedule=capacity", "model.beta=3.2908593584222947",
                        "model.encoder.hidden_dims=[64,64]", "seed=3", "model.latent_dim=16"],
                       exclude_keys=["seed"])
    assert name == "kl_schedule-capacity_beta-3.291_hidden_dims-_64_64__latent_dim-16"
    # two keys ending alike keep their full names
    assert job_dirname(["model.encoder.activation=tanh", "model.decoder.activation=elu"], []) \
        == "model.encoder.activation-tanh_model.decoder.activation-elu"
    assert len(job_dirname([f"k{i}=" + "x" * 50 for i in range(10)], [])) <= 120
    # a checkpoint inside such a folder is a valid ckpt_path= override (no "=", ",", "[")
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(f"ckpt_path=out/0_{name}/last.ckpt")
    assert override.value() == f"out/0_{name}/last.ckpt"


def test_mnist_beta_sweep_recipe_launches_one_beta_vae_per_beta(tmp_path):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate

    cfg = compose_config("train", ["experiment=mnist_beta_sweep"], tmp_path)
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    betas = []
    for overrides in jobs:  # what each job of the sweep trains
        job = compose_config("train", ["experiment=mnist_beta_sweep", *overrides], tmp_path)
        model = instantiate(job.model)
        betas.append(model.kl_schedule.weight(step=0))
        assert job.data._target_.endswith("MNISTDataModule")
    assert betas == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_a_job_resumed_after_failing_counts_as_completed(tmp_path):
    job = tmp_path / "0_beta-1"
    (job / ".hydra").mkdir(parents=True)
    write_json(job / "failed.json", failure_record(FloatingPointError("train loss is nan")))
    assert read_job(job).status == "failed"
    os.utime(job / "failed.json", (1, 1))  # the failure came first, then a resumed run finished
    (job / "metrics.json").write_text(json.dumps({"test/elbo": -30.0}))
    assert read_job(job).status == "completed"
    assert read_job(job).metrics == {"test/elbo": -30.0}
