"""vaelab-eval: every metric of a trained checkpoint in a new metrics.json beside the run."""

import json
import math
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.commands import run_command
from vaelab.eval import evaluate
from vaelab.metric_specs import descriptions
from vaelab.run_dir import run_dir_of
from vaelab.train import train

#: the metrics of every evaluation (data without factors, one latent layer, the prior sampler)
DESCRIPTIONS = descriptions(factors=False)

pytestmark = pytest.mark.integration

EVAL = ["iwae.num_samples=20", "iwae.max_decoded_values=200000", "fid.num_samples=200",
        "fid.kid_subsets=5", "fid.kid_subset_size=50", "logger=none",
        # a stand-in feature network (raw pixels), as Inception weights need the network
        "fid.feature_extractor={_target_: torch.nn.Flatten}"]


@pytest.fixture
def iwae_checkpoint(make_cfg, tmp_path) -> Path:
    train(make_cfg(["model/objective=iwae", "model.objective.num_samples=2", "trainer.max_epochs=1",
                    "logger=none", "test=false"], output_dir=tmp_path / "run"))
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


def test_eval_writes_every_metric_beside_the_run(make_cfg, iwae_checkpoint, tmp_path):
    run_dir = iwae_checkpoint.parent.parent
    cfg = make_cfg([f"ckpt_path={iwae_checkpoint}", *EVAL], name="eval",
                   output_dir=run_dir / "eval" / "first")
    # The default folder of an evaluation is inside the evaluated run.
    assert run_dir_of(iwae_checkpoint) == run_dir
    assert cfg.hydra.run.dir.startswith(f"{run_dir}/eval/")

    metrics = evaluate(cfg)
    written = json.loads((run_dir / "eval" / "first" / "metrics.json").read_text())
    assert set(DESCRIPTIONS) <= set(written)
    assert written["ckpt_path"] == str(iwae_checkpoint)
    assert all(math.isfinite(written[k]) for k in DESCRIPTIONS)
    assert written["test/nll_num_samples"] == 20 and written["test/nll_num_images"] == 300
    assert written["test/fid_num_samples"] == 200
    # every sampler of conf/samplers/default.yaml is scored: the prior's is test/fid
    assert {"test/fid_gmm", "test/kid_mean_gmm", "test/kid_std_gmm"} <= set(written)
    assert written["test/fid_gmm"] != written["test/fid"]
    # ... each from its own random stream: adding a sampler changes no other's number
    alone = evaluate(make_cfg([f"ckpt_path={iwae_checkpoint}", *EVAL, "samplers.gmm=null"],
                              name="eval", output_dir=run_dir / "eval" / "prior_only"))
    assert alone["test/fid"] == written["test/fid"] and "test/fid_gmm" not in alone
    trained = OmegaConf.load(run_dir / "config_resolved.yaml")
    assert 0 <= written["test/active_units"] <= written["test/latent_dim"] \
        == trained.model.latent_dim
    # 20 importance samples give a tighter bound than the 1-sample ELBO.
    assert metrics["test/nll"] < -metrics["test/elbo"]
    assert metrics["test/nll_bpd"] == pytest.approx(metrics["test/nll"] / (64 * math.log(2)))

    # An evaluation never overwrites an earlier one, and keeps its config and log beside it.
    with pytest.raises(FileExistsError, match="holds the files of an earlier command"):
        evaluate(cfg)
    first = run_dir / "eval" / "first"
    assert (first / "config_resolved.yaml").is_file() and (first / ".hydra").is_dir()
    assert "decodes" in (first / "eval.log").read_text()


def test_eval_reproduces_the_test_elbo_of_training(make_cfg, tmp_path):
    metrics = train(make_cfg(["trainer.max_epochs=2", "logger=none"]))
    cfg = make_cfg([f"ckpt_path={metrics['best_checkpoint']}", "logger=none", "fid.enabled=false",
                    "iwae.num_samples=2"], name="eval", output_dir=tmp_path / "eval")
    evaluated = evaluate(cfg)
    assert evaluated["test/elbo"] == pytest.approx(metrics["test/elbo"], rel=1e-3)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test/elbo"] == evaluated["test/elbo"]


def test_eval_of_a_missing_checkpoint_says_what_to_pass(make_cfg, tmp_path):
    cfg = make_cfg([f"ckpt_path={tmp_path / 'nope.ckpt'}"], name="eval")
    with pytest.raises(FileNotFoundError, match="checkpoints/last.ckpt"):
        evaluate(cfg)
    cfg = make_cfg([f"ckpt_path={tmp_path}"], name="eval")  # a folder
    with pytest.raises(IsADirectoryError, match=f"ckpt_path={tmp_path} is a folder"):
        evaluate(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_eval_refusals_leave_nothing_and_unwritable_folders_say_which_option(make_cfg,
                                                                             tmp_path):
    train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match="needs data with ground-truth factors"):
        evaluate(make_cfg([f"ckpt_path={ckpt}", "disentanglement.enabled=true"], name="eval",
                          output_dir=out))
    assert not out.exists()  # refused before its folder was taken
    (tmp_path / "a_file").write_text("")  # a folder that cannot be made, as a read-only one
    with pytest.raises(PermissionError, match=r"cannot write the run directory .* "
                                              r"hydra\.run\.dir=<folder>"):
        evaluate(make_cfg([f"ckpt_path={ckpt}", "fid.enabled=false"], name="eval",
                          output_dir=tmp_path / "a_file" / "x"))


def test_the_nll_subset_has_its_own_elbo_from_the_same_samples(make_cfg, tmp_path):
    metrics = train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = evaluate(make_cfg([f"ckpt_path={ckpt}", "fid.enabled=false", "logger=none",
                                "iwae.num_samples=50", "iwae.num_images=40"], name="eval",
                               output_dir=tmp_path / "eval"))
    assert result["test/nll_num_images"] == 40
    # on the same 40 images: ELBO <= log p(x) bound, and the gap is what K=50 samples buy
    assert -result["test/nll"] >= result["test/nll_elbo"]
    assert result["test/nll_elbo"] != pytest.approx(result["test/elbo"], abs=1e-3)
    assert metrics["val/elbo"] < 0


def test_eval_reads_the_runs_own_data_before_the_environments(make_cfg, mnist_root, tmp_path,
                                                             monkeypatch):
    """Issue 21: with VAELAB_DATA_DIR set, vaelab-eval looked there instead of in the folder the
    run was trained from, then said the data was not where the run was trained from."""
    train(make_cfg(["data=mnist", f"data.data_dir={mnist_root}", "data.val_size=20",
                    "data.batch_size=16", "trainer.max_epochs=1", "logger=none", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "elsewhere"))
    quick = [f"ckpt_path={ckpt}", "fid.enabled=false", "iwae.num_samples=2", "logger=none"]
    assert evaluate(make_cfg(quick, name="eval", output_dir=tmp_path / "e1"))["test/elbo"] < 0
    mnist_root.rename(tmp_path / "elsewhere")  # the run's folder is gone: the environment's
    assert evaluate(make_cfg(quick, name="eval", output_dir=tmp_path / "e2"))["test/elbo"] < 0


def test_eval_of_moved_data_names_its_own_option(make_cfg, mnist_root, tmp_path):
    train(make_cfg(["data=mnist", f"data.data_dir={mnist_root}", "data.val_size=20",
                    "data.batch_size=16", "trainer.max_epochs=1", "logger=none", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = make_cfg([f"ckpt_path={ckpt}", f"data_dir={tmp_path / 'elsewhere'}",
                    "fid.enabled=false"], name="eval", output_dir=tmp_path / "eval")
    with pytest.raises(FileNotFoundError, match=r"data_dir=<folder>") as error:
        evaluate(cfg)
    assert "data.data_dir" not in str(error.value)
    # failed in its own folder, once the checkpoint loaded: the one small record
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["failed.json"]


def test_eval_on_two_processes_agrees_with_one(make_cfg, tmp_path):
    """vaelab-eval trainer=ddp_sim: two CPU processes, each scoring half the test set."""

    train(make_cfg(["trainer.max_epochs=2", "logger=none", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    common = [f"ckpt_path={ckpt}", "fid.enabled=false", "iwae.num_samples=64", "logger=none",
              "callbacks.progress=null"]
    single = evaluate(make_cfg(common, name="eval", output_dir=tmp_path / "single"))
    run_command(tmp_path, ["vaelab", "eval", *common, "trainer=ddp_sim",
                           f"hydra.run.dir={tmp_path / 'ddp'}"], timeout=300)
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["test/nll_num_images"] == single["test/nll_num_images"] == 300
    for key in ("test/elbo", "test/nll", "test/nll_elbo"):
        assert abs(ddp[key] - single[key]) < 0.5, key
    assert ddp["test/active_units"] == single["test/active_units"]
    assert ddp["test/recon_mse"] == pytest.approx(single["test/recon_mse"], rel=1e-5)


def test_eval_says_what_it_will_do_shows_progress_and_logs_it(make_cfg, tmp_path):

    train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false",
                    "data.eval_batch_size=100"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = run_command(tmp_path, ["vaelab", "eval", f"ckpt_path={ckpt}", "fid.enabled=false",
                                 "iwae.num_samples=30", "callbacks.progress.every_n_steps=1",
                                 f"hydra.run.dir={tmp_path / 'eval'}"])
    assert "K=30 importance samples on 300 of them: 9,000 decodes" in out
    lines = re.findall(r"testing: batch (\d)/3 \([\d.]+ it/s, ETA [\d:?]+\)", out)
    assert lines == ["1", "2", "3"]
    assert len(re.findall(r"\n +test/nll +-?[\d.]+ +-log p\(x\)", out)) == 1  # not Lightning's too
    log = (tmp_path / "eval" / "eval.log").read_text()
    assert "9,000 decodes" in log and "testing: batch 3/3" in log
