"""The stability features any model can use: the EMA of the weights (callbacks/weight_averaging.py)
against a hand-computed average, skipped updates (callbacks/update_skipping.py) leaving every
weight as it was, and both resuming exactly."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers.models import binary_images, tiny_hvae, tiny_vae
from vaelab.callbacks import EMA, SkipLargeUpdates
from vaelab.callbacks.update_skipping import gradient_norm


class RawWeights(L.Callback):
    """Test helper: the model's weights after every optimiser step, as the optimiser left them."""

    def __init__(self):
        self.steps: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.steps.append([p.detach().clone() for p in pl_module.parameters()])


def _fit(model, callbacks, steps: int = 4):
    data = TensorDataset(binary_images(64), torch.zeros(64, dtype=torch.long))
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    trainer.fit(model.train(), DataLoader(data, batch_size=16))
    return trainer


@pytest.mark.parametrize("make", [tiny_vae, tiny_hvae], ids=["vae", "hvae"])
def test_ema_weights_equal_a_hand_computed_average(make):
    """a_1 = w_1, a_t = d a_(t-1) + (1 - d) w_t over the steps from start_step on; after
    training the model holds the average."""
    model, raw = make(), RawWeights()  # RawWeights runs first: it sees the optimiser's weights
    _fit(model, [raw, EMA(decay=0.6, start_step=1)], steps=5)
    average = raw.steps[1]
    for weights in raw.steps[2:]:
        average = [0.6 * a + 0.4 * w for a, w in zip(average, weights)]
    for expected, got in zip(average, model.parameters()):
        torch.testing.assert_close(got, expected)
    assert not all(torch.equal(a, w) for a, w in zip(average, raw.steps[-1]))


def test_the_gradient_norm_is_the_norm_of_all_gradients_as_one_vector():
    model = tiny_vae()
    loss, _, _ = model.batch_values(binary_images(8))
    loss.backward()
    optimizer = torch.optim.Adam(model.parameters())
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert gradient_norm(optimizer) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("make", [tiny_vae, tiny_hvae], ids=["vae", "hvae"])
def test_a_skipped_step_changes_no_weight_and_no_optimiser_state(make):
    model = make()
    before = [p.detach().clone() for p in model.parameters()]
    skip = SkipLargeUpdates(max_grad_norm=0.0)  # every norm is above 0
    trainer = _fit(model, [skip], steps=3)
    assert skip.skipped == 3 and trainer.global_step == 3
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert trainer.optimizers[0].state_dict()["state"] == {}  # Adam never stepped
    assert trainer.callback_metrics["train/skipped_updates"] == 3

    model = make()
    kept = SkipLargeUpdates(max_grad_norm=1e9)
    _fit(model, [kept], steps=3)
    assert kept.skipped == 0 and not all(torch.equal(a, b)
                                         for a, b in zip(before, model.parameters()))


def test_a_spike_against_the_recent_median_is_skipped_and_a_stall_is_named(caplog):
    """max_norm_ratio: once `window` steps were kept, a norm above ratio x their median is
    skipped; ordinary growth is not. warn_after skips in a row warn that training stalled."""
    skip = SkipLargeUpdates(max_norm_ratio=10.0, window=4, warn_after=3)

    class Step:  # the parts of a trainer and a model the hook reads
        global_step = 0

    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    decisions = []
    for norm in [100.0, 50.0, 400.0, 2000.0, 900.0, 1100.0, 30000.0, float("nan"), 1900.0]:
        model.weight.grad = torch.tensor([[norm]])
        model.bias.grad = torch.zeros(1)
        skip.on_before_optimizer_step(Step, model, optimizer)
        decisions.append(model.weight.grad is None)
    # the first 4 are kept unchecked; 900 and 1100 are ordinary (median of the kept 400-2000
    # is 650-1000); 30000 is a spike; NaN is never kept; 1900 is ordinary again
    assert decisions == [False] * 6 + [True, True, False]
    assert skip.skipped == 2
    with caplog.at_level("WARNING", logger="vaelab"):
        for _ in range(3):
            model.weight.grad = torch.tensor([[float("inf")]])
            skip.on_before_optimizer_step(Step, model, optimizer)
    assert "the last 3 updates were all skipped" in caplog.text


def test_the_options_are_checked_in_one_line():
    for make, match in [(lambda: EMA(decay=1.5), "callbacks.ema.decay"),
                        (lambda: EMA(every_n_steps=0), "callbacks.ema.every_n_steps"),
                        (lambda: SkipLargeUpdates(-1), "callbacks.skip_updates.max_grad_norm"),
                        (lambda: SkipLargeUpdates(max_norm_ratio=0.5), "max_norm_ratio"),
                        (lambda: SkipLargeUpdates(), "max_grad_norm .* or max_norm_ratio")]:
        with pytest.raises(ValueError, match=match):
            make()


class SkipEveryThird(SkipLargeUpdates):
    """Test helper: also skips every third step, so a run skips some updates and keeps others
    (a fixed threshold skips all or none of a short run's smoothly falling norms)."""

    def should_skip(self, norm, step):
        return super().should_skip(norm, step) or step % 3 == 1


STABLE = ["logger=csv", "model.latent_dim=2", "callbacks.lr_monitor=null",
          "callbacks=[default,ema,skip_updates]", "callbacks.ema.decay=0.9",
          "callbacks.ema.start_step=5", "callbacks.latent_viz.every_n_epochs=1",
          "callbacks.skip_updates._target_=test_stability.SkipEveryThird",
          "callbacks.skip_updates.max_norm_ratio=3", "callbacks.skip_updates.window=5"]


@pytest.mark.integration
def test_ema_and_skipping_resume_as_an_uninterrupted_run_and_evaluate_the_average(make_cfg,
                                                                                 tmp_path):
    """2 epochs then 2 more from last.ckpt repeat 4 epochs in one go: the same metrics (the
    skipped count and mean gradient norm too), raw and averaged weights. The test and
    vaelab-eval score the checkpoint's averaged weights: they agree."""
    from vaelab.eval import evaluate
    from vaelab.train import train

    train(make_cfg([*STABLE, "trainer.max_epochs=2"], output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg([*STABLE, "trainer.max_epochs=4", f"ckpt_path={last}"],
                             output_dir=tmp_path / "resumed"))
    whole = train(make_cfg([*STABLE, "trainer.max_epochs=4"], output_dir=tmp_path / "whole"))
    for key in ("val/elbo", "test/elbo", "train/loss", "train/skipped_updates",
                "train/grad_norm"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-4), key
    assert whole["train/skipped_updates"] >= 27  # steps 1, 4, ..., 79 of 80 and any spikes
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=True)
            for d in ("resumed", "whole"))
    for key in ("state_dict", "current_model_state"):
        for name, value in a[key].items():
            torch.testing.assert_close(value, b[key][name], rtol=0, atol=1e-5, msg=name)
    raw, average = b["current_model_state"], b["state_dict"]
    assert not torch.equal(raw["decoder.body.1.weight"], average["decoder.body.1.weight"])

    evaluation = evaluate(make_cfg([f"ckpt_path={whole['best_checkpoint']}", "fid.enabled=false",
                                    "iwae.num_samples=2"], name="eval",
                                   output_dir=tmp_path / "eval"))
    assert evaluation["test/elbo"] == pytest.approx(whole["test/elbo"], abs=1e-3)
    figures = sorted((tmp_path / "whole" / "figures" / "reconstructions").glob("*.png"))
    assert len(figures) == 4
