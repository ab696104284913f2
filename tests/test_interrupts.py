"""Signals in every phase of every command: SIGTERM exits 143 and SIGINT (Ctrl-C) 130, never 0 or
1, with a record of what was interrupted; a run stopped during its final test resumes to the
numbers of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from vaelab.data import DigitsDataModule
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["logger=csv", "model.latent_dim=2", "callbacks.latent_viz=null"]
TESTS = Path(__file__).parent


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
        time.sleep(30)  # the default handler would have killed the process by now
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


def run_until(cmd: list[str], cwd: Path, marker: str, signum: int, wait: float = 0.0,
              limit: float = 30.0) -> tuple[int, str, float]:
    """Start `python -m <cmd>`, send `signum` once `marker` shows in its output (after `wait`
    seconds); (exit status, output, seconds it took to stop). Killed after `limit` seconds."""
    proc = subprocess.Popen([sys.executable, "-m", *cmd], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            break
    time.sleep(wait)
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        rest, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
    return proc.returncode, "".join(lines) + rest, time.monotonic() - sent


@pytest.fixture
def tests_importable(monkeypatch):
    """Subprocesses can import the helpers of this module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))


def test_sigterm_while_the_data_loads_exits_143_with_a_record(tmp_path, tests_importable):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab.train", f"data._target_={__name__}.SelfTerminatingDigits",
         "callbacks.progress=null", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "SIGTERM while training" in proc.stderr and "Traceback" not in proc.stderr
    record = json.loads((run_dir / "failed.json").read_text())
    assert record["interrupted"] and not record["started"]


def test_vaelab_eval_stops_within_seconds_of_sigterm(make_cfg, tmp_path):
    """Issue 22 item 12: the evaluation loop waited for its batch (minutes, or never on its
    last batch)."""
    train(make_cfg([*RUN, "trainer.max_epochs=1", "test=false"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    eval_dir = tmp_path / "eval"
    status, out, took = run_until(
        ["vaelab.eval", f"ckpt_path={ckpt}", "fid.enabled=false", "iwae.num_samples=100000",
         "callbacks.progress=null", f"hydra.run.dir={eval_dir}"],
        tmp_path, marker="decodes", signum=signal.SIGTERM, wait=1.0)
    assert status == 143 and took < 15, out[-2000:]
    assert "SIGTERM while evaluating" in out and "Traceback" not in out
    record = json.loads((eval_dir / "failed.json").read_text())
    assert record["interrupted"] and record["started"]
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
