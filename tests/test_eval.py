"""vaelab-eval rebuilds a run from its checkpoint and reproduces the training run's test numbers."""

import json

import pytest

from vaelab.eval import evaluate
from vaelab.train import train


def test_eval_reproduces_the_test_elbo_of_training(make_cfg, tmp_path):
    metrics = train(make_cfg(["trainer.max_epochs=2", "logger=none"]))
    cfg = make_cfg([f"ckpt_path={metrics['best_checkpoint']}", "logger=none"], name="eval",
                   output_dir=tmp_path / "eval")
    evaluated = evaluate(cfg)
    assert evaluated["test/elbo"] == pytest.approx(metrics["test/elbo"], rel=1e-3)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test/elbo"] == evaluated["test/elbo"]


def test_eval_of_a_missing_checkpoint_says_what_to_pass(make_cfg, tmp_path):
    cfg = make_cfg([f"ckpt_path={tmp_path / 'nope.ckpt'}"], name="eval")
    with pytest.raises(FileNotFoundError, match="checkpoints/last.ckpt"):
        evaluate(cfg)
