"""Signals in every phase of every command: SIGTERM exits 143 and SIGINT (Ctrl-C) 130, never 0 or
1, with a record of what was interrupted; a run stopped during its final test resumes to the
numbers of an uninterrupted run."""

import json
import os
import signal
import threading
import time

import lightning as L
import pytest

from vaelab.data import DigitsDataModule
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["logger=csv", "model.latent_dim=2", "callbacks.latent_viz=null"]


class SendSignal(L.Callback):
    """Test helper: the process receives `name` (SIGTERM, SIGINT) after training step `at_step`
    (hook=train) or when the final test starts (hook=test)."""

    def __init__(self, name: str, hook: str, at_step: int = 0):
        self.signum, self.hook, self.at_step = getattr(signal, name), hook, at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.hook == "train" and trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)

    def on_test_batch_start(self, trainer, *args) -> None:
        if self.hook == "test":
            os.kill(os.getpid(), self.signum)


class SelfTerminatingDigits(DigitsDataModule):
    """Test helper: SIGTERM arrives while the data loads (before Lightning's handler exists)."""

    def load_splits(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # a handler runs first
        return super().load_splits()


def send(name: str, hook: str, at_step: int = 0) -> list[str]:
    return [f"+callbacks.signal._target_={__name__}.SendSignal", f"+callbacks.signal.name={name}",
            f"+callbacks.signal.hook={hook}", f"+callbacks.signal.at_step={at_step}"]


def test_ctrl_c_while_training_saves_a_checkpoint_and_exits_130(make_cfg, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        train(make_cfg([*RUN, "trainer.max_epochs=2", *send("SIGINT", "train", 7)]))
    assert stopped.value.code == 130  # 128 + SIGINT (Lightning's own: sys.exit(1))
    checkpoint = tmp_path / "run" / "checkpoints" / "interrupted.ckpt"
    record = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert record["interrupted"] and record["checkpoint"] == str(checkpoint)
    assert "SIGINT" in record["message"] and "resume=auto" in record["message"]
    import torch

    assert torch.load(checkpoint, weights_only=True)["global_step"] == 7


def test_sigterm_in_the_final_test_exits_143_and_the_resumed_run_returns_the_same_numbers(
        make_cfg, tmp_path):
    """Issue 21 items 3 and 5: Lightning's SIGTERMException would exit 0; and a resumed run
    used to validate again (other numbers) and lose the train/* metrics."""
    epochs = ["trainer.max_epochs=2"]
    with pytest.raises(SystemExit) as stopped:
        train(make_cfg([*RUN, *epochs, *send("SIGTERM", "test")]))
    assert stopped.value.code == 143
    run = tmp_path / "run"
    record = json.loads((run / "failed.json").read_text())
    assert record["interrupted"] and "SIGTERM while testing" in record["message"]
    assert not (run / "metrics.json").exists()

    resumed = train(make_cfg([*RUN, *epochs, "resume=auto"]))
    whole = train(make_cfg([*RUN, *epochs], output_dir=tmp_path / "whole"))
    numbers = {k for k, v in whole.items() if isinstance(v, float)}
    assert {"train/loss", "lr-Adam", "val/elbo", "test/elbo"} <= numbers
    assert {k: resumed.get(k) for k in numbers} == pytest.approx({k: whole[k] for k in numbers},
                                                                 abs=1e-6)


class SawSignal(Exception):
    """What the test's own handler raises: a signal that no handler of vaelab's caught."""


@pytest.fixture
def unhandled_signals_raise():
    """Inside the test, a SIGTERM that vaelab does not handle raises SawSignal (instead of
    killing pytest, as the default handler would)."""
    def raise_it(signum, frame):
        raise SawSignal(signum)

    before = signal.signal(signal.SIGTERM, raise_it)
    yield
    signal.signal(signal.SIGTERM, before)


def test_sigterm_while_the_data_loads_exits_143_with_a_record(make_cfg, tmp_path,
                                                              unhandled_signals_raise):
    """Issue 21 item 3: a SIGTERM before Lightning's handler existed left no failed.json."""
    with pytest.raises(SystemExit) as stopped:
        train(make_cfg([*RUN, f"data._target_={__name__}.SelfTerminatingDigits"]))
    assert stopped.value.code == 143
    record = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert record["interrupted"] and not record["started"]
    assert record["message"].startswith("SIGTERM while training")


def test_vaelab_eval_stops_within_seconds_of_sigterm(make_cfg, tmp_path,
                                                      unhandled_signals_raise):
    """Issue 22 item 12: the evaluation loop waited for its batch (minutes, or for ever on its
    last batch)."""
    from vaelab.eval import evaluate

    train(make_cfg([*RUN, "trainer.max_epochs=1", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    eval_dir = tmp_path / "eval"
    cfg = make_cfg([f"ckpt_path={ckpt}", "fid.enabled=false", "iwae.num_samples=100000",
                    "logger=none"], name="eval", output_dir=eval_dir)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()  # like `kill` from another shell, while the loop decodes
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit) as stopped:
            evaluate(cfg)
    finally:
        timer.cancel()
    assert stopped.value.code == 143 and time.monotonic() - started < 15
    record = json.loads((eval_dir / "failed.json").read_text())
    assert record["interrupted"] and record["started"]
    assert record["message"].startswith("SIGTERM while evaluating")
    assert not (eval_dir / "metrics.json").exists()


def test_the_handlers_come_back_after_a_command():
    from vaelab import interrupts

    before = signal.getsignal(signal.SIGINT)
    with interrupts.handled():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with pytest.raises(interrupts.Interrupted) as stopped, interrupts.during("testing it"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert stopped.value.code == 130 and str(stopped.value) == "SIGINT (Ctrl-C) while testing it"
    assert signal.getsignal(signal.SIGINT) is before
