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

pytestmark = pytest.mark.integration

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
    assert rows["2"]["status"] == "failed" and "model.optimizer.lr=-1" in rows["2"]["error"]
    # refused before it started: its folder holds the one small record the report reads
    assert [p.name for p in next(sweep.glob("2_*")).iterdir()] == ["failed.json"]
    assert "model.optimizer.lr=-1" in rows["2"]["overrides"]
    assert rows["3"]["status"] == "incomplete" and not rows["3"]["error"]
    markdown = (sweep / "report" / "sweep.md").read_text()
    assert "## Failed jobs" in markdown and "FloatingPointError" in markdown


@pytest.mark.slow  # 13-21 s: kept out of the default run's 15 minutes
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


# -- disentanglement sweeps (hand-made job folders, as a multirun and vaelab-eval write them) --

OBJECTIVES = {"BetaTCVAE": "model.beta", "FactorVAE": "model.objective.gamma"}


#: the checkpoint that training tested in the hand-made jobs
TESTED = "epoch_002.ckpt"


def write_job(sweep: Path, num: int, objective: str, strength: float, seed: int,
              evals: dict[str, dict] = (), latent_dim: int = 10) -> Path:
    """A completed job: .hydra/, config_resolved.yaml, metrics.json, and eval/<name>/metrics.json
    for each of `evals` (written in order, so the last is the newest; of the tested checkpoint
    unless the record names its ckpt_path)."""
    key = OBJECTIVES[objective]
    job = sweep / f"{num}_{objective}-{strength}_seed-{seed}"
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"job": {"num": num}}}, job / ".hydra" / "hydra.yaml")
    OmegaConf.save([f"{key}={strength}", f"seed={seed}", f"model.latent_dim={latent_dim}"],
                   job / ".hydra" / "overrides.yaml")
    config = OmegaConf.create({"seed": seed, "model": {
        "beta": 1.0, "latent_dim": latent_dim,
        "kl_schedule": {"_target_": "vaelab.models.kl_schedules.ConstantBeta"},
        "objective": {"_target_": f"vaelab.models.objectives.{objective}"}}})
    OmegaConf.update(config, key, strength)
    OmegaConf.save(config, job / "config_resolved.yaml")
    tested = str(job / "checkpoints" / TESTED)
    write_json(job / "metrics.json", {"test/elbo": -30.0 - strength, "test/recon": 20.0 + strength,
                                      "test/kl": 10.0 - strength / 10,
                                      "tested_checkpoint": tested})
    for i, (name, record) in enumerate(dict(evals).items()):
        (job / "eval" / name).mkdir(parents=True)
        write_json(job / "eval" / name / "metrics.json", {"ckpt_path": tested, **record})
        os.utime(job / "eval" / name / "metrics.json", (1000 + i, 1000 + i))
    return job


def scores(mig: float) -> dict:
    return {"test/mig": mig, "test/dci_disentanglement": mig / 2, "test/sap": 0.1,
            "test/beta_vae_score": 0.8, "test/factor_vae_score": 0.7, "test/modularity": 0.9,
            "test/elbo": -31.0}


@pytest.fixture
def disentanglement_sweep(tmp_path) -> Path:
    """2 objectives x 2 strengths x 2 seeds; job 7 not evaluated, job 0 evaluated twice."""
    sweep, num = tmp_path / "sweep", 0
    for objective, strengths in (("BetaTCVAE", (1, 4)), ("FactorVAE", (10, 40))):
        for strength in strengths:
            for seed in (0, 1):
                mig = strength / 100 + seed / 100
                evals = {} if num == 7 else {"2024-01-01_10-00-00-000000": scores(mig)}
                if num == 0:
                    evals["2024-01-02_10-00-00-000000"] = scores(0.5)
                write_job(sweep, num, objective, strength, seed, evals)
                num += 1
    return sweep


def test_report_adds_disentanglement_metrics_per_objective_and_strength(disentanglement_sweep):
    report_main([str(disentanglement_sweep), "--no-model"])
    rows = {int(r["num"]): r for r in read_table(disentanglement_sweep)}
    assert [rows[i]["objective"] for i in range(8)] == ["BetaTCVAE"] * 4 + ["FactorVAE"] * 4
    assert [float(rows[i]["strength"]) for i in range(8)] == [1, 1, 4, 4, 10, 10, 40, 40]
    assert float(rows[0]["mig"]) == 0.5  # the newest evaluation of job 0
    assert float(rows[5]["mig"]) == pytest.approx(0.11)
    assert float(rows[5]["dci_disentanglement"]) == pytest.approx(0.055)
    assert rows[7]["mig"] == "" and float(rows[7]["kl"]) == 6.0  # trained, not evaluated
    assert float(rows[5]["elbo"]) == -40.0  # training's test ELBO, not the evaluation's
    report = disentanglement_sweep / "report"
    for name in ("disentanglement_vs_strength.png", "disentanglement_vs_rate.png"):
        assert (report / name).stat().st_size > 0, name
    markdown = (report / "sweep.md").read_text()
    header = markdown.split("| job |", 1)[1].split("\n", 1)[0]
    assert all(f" {c} " in header for c in ("objective", "strength", "mig", "sap",
                                            "beta_vae_score", "factor_vae_score"))
    assert "newest vaelab-eval" in markdown and "![disentanglement_vs_rate]" in markdown


def test_disentanglement_figures_pool_seeds_into_one_line_per_objective(disentanglement_sweep,
                                                                          tmp_path):
    from vaelab.report import build_report, disentanglement_figures, swept_keys
    from vaelab.sweep import collect_jobs

    rows = build_report(disentanglement_sweep, tmp_path / "out", with_model=False)
    figures = disentanglement_figures(rows, swept_keys(collect_jobs(disentanglement_sweep)),
                                      "test")
    by_strength = figures["disentanglement_vs_strength.png"]
    mig = next(ax for ax in by_strength.axes if ax.get_title() == "mig")
    lines = {bars.get_label(): bars.lines[0] for bars in mig.containers}
    assert sorted(lines) == ["FactorVAE", "β-TCVAE"]  # the objectives' names in plots
    assert list(lines["FactorVAE"].get_xdata()) == [10, 40]
    # mean over seeds 0 and 1; at strength 40 job 7 (not evaluated) is left out
    assert list(lines["FactorVAE"].get_ydata()) == pytest.approx([0.105, 0.40])
    assert list(lines["β-TCVAE"].get_ydata()) == pytest.approx([(0.5 + 0.02) / 2, 0.045])
    by_rate = figures["disentanglement_vs_rate.png"]
    mig = next(ax for ax in by_rate.axes if ax.get_title() == "mig")
    rate = {bars.get_label(): bars.lines[0] for bars in mig.containers}["FactorVAE"]
    assert list(rate.get_xdata()) == pytest.approx([9.0, 6.0])  # test KL = 10 - strength / 10


def test_report_splits_lines_by_other_swept_settings_not_by_seed(tmp_path):
    from vaelab.report import build_report, line_labels

    sweep = tmp_path / "sweep"
    for num, (latent_dim, seed) in enumerate([(4, 0), (4, 1), (10, 0), (10, 1)]):
        write_job(sweep, num, "FactorVAE", 10, seed, {"e": scores(0.1)}, latent_dim=latent_dim)
    rows = build_report(sweep, tmp_path / "out", with_model=False)
    assert line_labels(rows, ["model.latent_dim", "seed"]) == \
        ["FactorVAE, latent_dim=4"] * 2 + ["FactorVAE, latent_dim=10"] * 2


def test_report_pairs_only_numbers_of_the_same_checkpoint(tmp_path):
    """Issue 21 item 12: ELBO from training's test of the best checkpoint, disentanglement from
    an evaluation of last.ckpt, in one row."""
    sweep = tmp_path / "sweep"
    last = {"ckpt_path": "somewhere/checkpoints/last.ckpt", **scores(0.9), "test/elbo": -50.0,
            "test/recon": 45.0, "test/kl": 5.0}
    # job 0: the tested checkpoint evaluated, then last.ckpt (newer); job 1: last.ckpt only
    write_job(sweep, 0, "FactorVAE", 10, 0, {"a": scores(0.2), "b": last})
    write_job(sweep, 1, "FactorVAE", 10, 1, {"b": last})
    report_main([str(sweep), "--no-model"])
    rows = {int(r["num"]): r for r in read_table(sweep)}
    assert rows[0]["checkpoint"] == TESTED and float(rows[0]["mig"]) == 0.2
    assert float(rows[0]["elbo"]) == -40.0  # training's, of the same checkpoint
    assert rows[1]["checkpoint"] == "last.ckpt" and float(rows[1]["mig"]) == 0.9
    assert (float(rows[1]["elbo"]), float(rows[1]["kl"])) == (-50.0, 5.0)  # last.ckpt's own
    assert "| checkpoint |" in (sweep / "report" / "sweep.md").read_text()


def test_report_without_disentanglement_metrics_adds_no_figures(tmp_path):
    sweep = tmp_path / "sweep"
    for num, beta in enumerate((1, 4)):
        write_job(sweep, num, "BetaTCVAE", beta, 0)
    report_main([str(sweep), "--no-model"])
    assert not list((sweep / "report").glob("disentanglement_*.png"))
    assert "mig" not in (sweep / "report" / "sweep.md").read_text()
