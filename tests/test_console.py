"""What a user sees: progress lines where the output is a file, the run directory, short errors,
the log file holding what the console showed, and no noise."""

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.commands import run_command
from helpers.configs import steps_per_epoch

pytestmark = pytest.mark.integration

#: lines that used to clutter every run (Lightning's defaults and adverts, known deprecations)
NOISE = ("GPU available", "TPU available", "💡 Tip", "litlogger", "LeafSpec",
         "already configured with model summary", "anonymous setting", "weights_only",
         "ckpt_path=None", "alembic", "sync_dist")


def run_dir_of(out: str) -> Path:
    return Path(re.search(r"run directory: (\S+)", out).group(1))


def test_a_run_into_a_file_prints_progress_lines_and_its_log_holds_them(tmp_path):
    """As under SLURM or `vaelab-train > run.out`: stdout is a pipe, not a terminal, and it
    holds the whole run, from the run directory to the final test metrics."""
    out, err = run_command(tmp_path, ["vaelab", "train", "trainer.max_epochs=2",
                                      "callbacks.progress.every_n_steps=7", "logger=csv"],
                           split_stderr=True)
    assert err == ""
    run = run_dir_of(out)
    assert f"metrics: {run}/metrics.json; best checkpoint: {run}/checkpoints/epoch_" in out
    tested = json.loads((run / "metrics.json").read_text())
    assert f"test metrics of {tested['tested_checkpoint']}\n" in out
    for key in ("test/elbo", "test/recon", "test/kl", "test/bpd"):
        assert re.search(rf"\n +{key} +{tested[key]:.4f} ", out), key
    steps = steps_per_epoch(OmegaConf.load(run / "config_resolved.yaml"))
    step_lines = re.findall(rf"epoch 1/2 step (\d+)/{steps} \(([\d.]+) it/s, ETA ([\d:?]+)\)",
                            out)
    assert [int(s) for s, _, _ in step_lines] == list(range(7, steps + 1, 7))
    assert "epoch 1/2 done in" in out and "epoch 2/2 done in" in out
    assert re.search(r"epoch 2/2 done in [\d.]+ s: train/loss=[\d.]+ .*val/elbo=-[\d.]+", out)
    # figures are drawn after the epoch's line, which says so; epochs count from 1 in the
    # lines and in file names alike
    drawn = len(list((run / "figures").iterdir()))  # one folder per figure
    assert drawn >= 7 and re.search(rf"epoch 2: {drawn} figures drawn in [\d.]+ s", out)
    assert (run / "figures" / "latent_manifold" / "epoch_002.png").is_file()
    assert {p.name for p in (run / "checkpoints").glob("epoch_*")} <= {"epoch_001.ckpt",
                                                                        "epoch_002.ckpt"}
    for noise in NOISE:
        assert noise not in out, noise
    log = (run / "train.log").read_text()
    for line in ("run directory:", "epoch 2/2 done in", "metrics:"):
        assert line in log


def test_an_error_prints_one_line_and_its_record_keeps_the_traceback(tmp_path):
    """On stderr, so a terminal shows it when stdout goes to a file."""
    out, err = run_command(tmp_path, ["vaelab", "train", "model.latent_dim=0"],
                           expect_ok=False, split_stderr=True)
    assert err.strip().endswith("ERROR: ValueError: model.latent_dim=0: give a whole number >= 1")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    record = json.loads((run_dir_of(out) / "failed.json").read_text())
    assert "Traceback (most recent call last)" in record["traceback"]
    assert "model.latent_dim=0" in record["message"]


@pytest.mark.parametrize("override, message", [
    ("model.beta=abc", "model.beta='abc': give a number >= 0"),
    ("model.beta=inf", "model.beta=inf: give a finite number >= 0"),
    ("model.latent_dim=-2", "model.latent_dim=-2: give a whole number >= 1"),
    ("model.encoder.hidden_dims=[0]", "model.encoder.hidden_dims[0]=0: give a whole number >= 1"),
    ("model.optimizer.lr=abc", "model.optimizer.lr='abc': give a number >= 0"),
    ("seed=abc", "seed='abc': give a whole number between 0 and 4294967295"),
    ("seed=-1", "seed=-1: give a whole number between 0 and 4294967295"),
    ("data.batch_size=2.5", "data.batch_size=2.5: give a whole number >= 1"),
    ("data.val_size=0", "data.val_size=0: give a count of images >= 1 or a fraction in (0, 1)"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: give a whole number >= 1"),
])
def test_bad_values_stop_before_training_with_the_key_and_its_range(make_cfg, override,
                                                                    message):
    from vaelab.train import train

    with pytest.raises(ValueError, match=re.escape(message)):
        train(make_cfg([override, "logger=none"]))


@pytest.mark.parametrize("experiment", ["mnist_conv", "burda_vae", "sprites_factor_vae",
                                        "celeba_vae"])
def test_the_shipped_recipes_pass_the_config_checks(make_cfg, experiment):
    from vaelab.config_checks import check_train_config

    check_train_config(make_cfg([f"experiment={experiment}"]))


def test_switching_the_progress_bar_off_removes_every_bar(make_cfg):
    from lightning.pytorch.callbacks import ProgressBar

    from vaelab.builders import instantiate_callbacks, trainer_switches

    cfg = make_cfg(["callbacks.progress=null", "callbacks.model_summary=null"])
    callbacks = instantiate_callbacks(cfg, have_loggers=True)
    assert not any(isinstance(c, ProgressBar) for c in callbacks)
    assert trainer_switches(callbacks) == {"enable_progress_bar": False,
                                           "enable_model_summary": False}
    from hydra.utils import instantiate

    trainer = instantiate(cfg.trainer, callbacks=callbacks, **trainer_switches(callbacks))
    assert trainer.progress_bar_callback is None  # Lightning added none of its own


def test_the_bars_show_the_running_epoch_not_the_previous_one(make_cfg):
    """Mid-epoch, the bar's train/loss is the mean of this epoch's steps so far."""
    import lightning as L
    from hydra.utils import instantiate

    from vaelab.callbacks.progress import RichProgress, current_metrics

    seen = {}

    class Peek(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 4:
                running = pl_module.metrics["train_means"]
                seen["expected"] = float(running.sums[0] / running.count)
                seen["shown"] = current_metrics(trainer, pl_module)["train/loss"]
                seen["rich"] = RichProgress().get_metrics(trainer, pl_module)["train/loss"]
                seen["logged"] = float(trainer.callback_metrics["train/loss"])  # epoch 0's

    cfg = make_cfg(["logger=none"])
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[Peek()],
                        enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    assert seen["shown"] == pytest.approx(seen["expected"])
    assert seen["rich"] == f"{seen['expected']:.3f}"
    assert abs(seen["shown"] - seen["logged"]) > 1e-3  # not the previous epoch's number


def test_debug_fdr_writes_no_checkpoints_and_no_figures(make_cfg, tmp_path):
    from vaelab.train import train

    metrics = train(make_cfg(["debug=fdr"]))
    assert "test/elbo" in metrics
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() and not (run / "figures").exists()
