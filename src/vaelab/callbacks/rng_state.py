"""Random number generator states in checkpoints, so a resumed run draws the same noise."""

import random

import lightning as L
import numpy as np
import torch


def collect_rng_states() -> dict:
    """Plain tensors, lists and numbers only, so checkpoints still load with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(),
              "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class RNGStateCheckpoint(L.Callback):
    """Stores the CPU/CUDA/numpy/python generator states in every checkpoint and restores them
    when training resumes from it.

    Restoring happens at train start, after the sanity-check validation, which draws noise that
    the uninterrupted run drew before its first epoch. Every rank is seeded alike and draws alike,
    so rank 0's states (the ones saved) are every rank's.
    """

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
