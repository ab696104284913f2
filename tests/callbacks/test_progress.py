"""Progress lines that tell the truth: epochs 1-based as in file names, rates timed from where
a resumed epoch started, slow batches in s/it."""

import logging
from types import SimpleNamespace

import pytest

from vaelab.callbacks import progress
from vaelab.callbacks.progress import PlainProgress, RichProgress


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """progress.time.monotonic reads clock[0]."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def stub_trainer(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=True, current_epoch=2, max_epochs=10,
                           num_training_batches=430, callback_metrics={}, **kwargs)


def test_a_resumed_epoch_times_its_rate_from_where_it_resumed(clock, caplog):
    """Resumed at step 200 of epoch 3: Lightning calls no on_train_epoch_start, and the 200
    skipped steps took no time here."""
    bar, trainer = PlainProgress(every_n_steps=5, every_n_seconds=1e9), stub_trainer()
    bar._trainer = trainer
    clock[0] = 9000.0  # hours after the process started
    with caplog.at_level(logging.INFO, logger="vaelab"):
        bar.on_train_start(trainer, None)
        for batch_idx in range(200, 210):
            clock[0] += 0.5
            bar.on_train_batch_end(trainer, None, None, None, batch_idx)
    assert "epoch 3/10 step 210/430 (2.0 it/s, ETA 0:01:50)" in caplog.text


def test_slow_batches_show_seconds_per_batch(clock, caplog):
    bar, trainer = PlainProgress(every_n_steps=1), stub_trainer()
    bar._trainer = trainer
    trainer.num_test_batches = [3]
    with caplog.at_level(logging.INFO, logger="vaelab"):
        bar.on_test_start(trainer, None)
        clock[0] += 20.0
        bar.on_test_batch_end(trainer, None, None, None, 0)
    assert "testing: batch 1/3 (20.0 s/it, ETA 0:00:40)" in caplog.text


def test_the_rich_bar_counts_epochs_from_one():
    bar = RichProgress()
    bar._trainer = SimpleNamespace(max_epochs=20)
    assert bar._get_train_description(0).strip() == "Epoch 1/20"
    assert bar._get_train_description(19).strip() == "Epoch 20/20"
