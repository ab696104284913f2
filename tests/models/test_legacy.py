"""Runs made before the latent model became components (tests/fixtures/legacy/, made by
commit 86ee6b7): their checkpoints load and evaluate to the same numbers, and the recipes train
to the same numbers for the same seed."""

import json
from pathlib import Path

import pytest

from helpers.configs import FAST
from vaelab.configs import compose_config
from vaelab.eval import evaluate
from vaelab.train import train

pytestmark = pytest.mark.integration

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
#: the digits defaults when the references were made (the quickstart's are tuned since: README)
DEFAULTS_THEN = ["data.binarize=dynamic", "model.latent_dim=8", "model.optimizer.lr=1e-3"]


@pytest.mark.parametrize("name", ["mlp_bernoulli", "conv_logistic"])
def test_an_old_checkpoint_evaluates_to_its_old_numbers(name, make_cfg, tmp_path):
    expected = json.loads((LEGACY / "legacy_eval.json").read_text())
    cfg = make_cfg([f"ckpt_path={LEGACY / f'{name}.ckpt'}", *expected["eval_overrides"],
                    "logger=none"], name="eval", output_dir=tmp_path / "eval")
    metrics = evaluate(cfg)
    old = expected["metrics"][name]
    assert {k: metrics[k] for k in old} == pytest.approx(old, rel=1e-5, abs=1e-7)


def test_recipes_train_to_the_same_numbers_as_before(tmp_path):
    """The default path and every objective and KL schedule of the single-layer VAE: the same
    final metrics (bitwise on the machine that made them: the same floating-point operations in
    the same order; the tolerance only absorbs another CPU's kernels, far below any change of
    the maths or the random draws)."""
    reference = json.loads((LEGACY / "reference_metrics.json").read_text())
    assert set(reference["fast"]) - set(FAST) <= {"callbacks.latent_viz=null", "logger=none",
                                                  "trainer.max_epochs=2"}
    for name, overrides in reference["overrides"].items():
        cfg = compose_config("train", [*reference["fast"], *DEFAULTS_THEN, *overrides],
                             tmp_path / name)
        metrics = train(cfg)
        old = reference["metrics"][name]
        assert {k: metrics[k] for k in old} == pytest.approx(old, rel=1e-5, abs=1e-7), name
