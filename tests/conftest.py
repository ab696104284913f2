"""Shared fixtures: configs composed like the command line, and tiny datasets in real formats."""

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from helpers.commands import run_command
from helpers.configs import FAST
from helpers.data import make_mnist
from vaelab.configs import compose_config

# Quiet and offline by default, whatever the developer's shell has set.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Tiny models on a shared 2-core machine: extra threads only contend (3x slower under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(overrides, name="train") -> a composed config writing under tmp_path/run."""

    def _make(overrides: list[str] = (), name: str = "train",
              output_dir: Path | None = None) -> DictConfig:
        fast = FAST if name == "train" else FAST[:2]
        return compose_config(name, [*fast, *overrides], output_dir or tmp_path / "run")

    return _make


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    return make_mnist(tmp_path / "data")


@pytest.fixture
def train_cli(tmp_path):
    """train_cli(args) runs `python -m vaelab train *args` in tmp_path (outputs/ lands there),
    without progress bars, and returns its output; wait=False returns the Popen instead, and
    expect_ok=False expects a non-zero exit (a sweep with a failed job)."""

    def _run(args: list[str], wait: bool = True, timeout: float = 120, expect_ok: bool = True):
        flags = [a for a in args if a.startswith("-")]  # e.g. -m, before the overrides
        overrides = [a for a in args if not a.startswith("-")]
        return run_command(tmp_path, ["vaelab", "train", *flags, "callbacks.progress=null",
                                      "callbacks.model_summary=null",
                                      "trainer.enable_progress_bar=false", *overrides],
                           expect_ok=expect_ok, timeout=timeout, wait=wait)

    return _run


@pytest.fixture
def decoded_files(monkeypatch) -> list[str]:
    """The names of the image files decoded while the test runs (each decode appends one)."""
    from vaelab.data.image_files import ImagePreprocess

    decoded = []
    real = ImagePreprocess.__call__

    def counting(self, path):
        decoded.append(path.name)
        return real(self, path)

    monkeypatch.setattr(ImagePreprocess, "__call__", counting)
    return decoded
