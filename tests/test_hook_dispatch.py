"""Lightning skips the training-step hooks that callbacks and the module inherit as no-ops;
the hooks they override still run every step."""

import lightning as L
import torch
from torch import nn

from helpers.models import binary_images, tiny_vae
from helpers.profiling import RecordingProfiler
from vaelab.hook_dispatch import TRAIN_STEP_HOOKS, LeanHookModule, skip_noop_hooks
from vaelab.train import train


class CountsSteps(L.Callback):
    def __init__(self):
        self.ends = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends += 1


def hooks_called(actions: list[str], owner: str) -> set[str]:
    """The hooks of `owner` ("[Callback]<state key>" or "[LightningModule]VAE") called."""
    return {a.rsplit(".", 1)[1] for a in actions if a.rsplit(".", 1)[0] == owner}


def test_lightning_skips_inherited_noop_hooks_and_runs_overridden_ones():
    model, counting, idle = tiny_vae().train(), CountsSteps(), L.Callback()
    trainer = L.Trainer(max_steps=3, callbacks=[counting, idle], profiler=RecordingProfiler(),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    skip_noop_hooks(trainer.callbacks, model)
    x = binary_images(24)
    RecordingProfiler.actions = []
    trainer.fit(model, torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(24)), batch_size=8))

    assert counting.ends == 3  # every step
    actions = RecordingProfiler.actions
    assert hooks_called(actions, f"[Callback]{counting.state_key}") & set(TRAIN_STEP_HOOKS) \
        == {"on_train_batch_end"}
    assert not hooks_called(actions, f"[Callback]{idle.state_key}") & set(TRAIN_STEP_HOOKS)
    assert not hooks_called(actions, "[LightningModule]VAE") & set(TRAIN_STEP_HOOKS)
    assert "optimizer_step" in hooks_called(actions, "[LightningModule]VAE")


def test_train_skips_the_noop_hooks_of_the_configured_callbacks(make_cfg):
    cfg = make_cfg(["+trainer.max_steps=2", "logger=none", "test=false",
                    "callbacks.latent_viz=null",
                    "+trainer.profiler._target_=helpers.profiling.RecordingProfiler"])
    RecordingProfiler.actions = []
    train(cfg)
    called = {(a.split("{")[0].rsplit(".", 1)[0], a.rsplit(".", 1)[1])
              for a in RecordingProfiler.actions
              if a.startswith(("[Callback]", "[LightningModule]")) and a.endswith(TRAIN_STEP_HOOKS)}
    # each step: the best and the step-wise checkpoints (both RunModelCheckpoint); nothing of
    # the other callbacks (last, interrupt, epoch summary, RNG state; the LR monitor needs a
    # logger) or the module
    assert called == {("[Callback]RunModelCheckpoint", "on_train_batch_end")}


def test_the_module_sets_its_hook_name_directly_and_still_registers_submodules(monkeypatch):
    model, linear = tiny_vae(), nn.Linear(2, 2)
    assigned = []
    original = nn.Module.__setattr__
    monkeypatch.setattr(nn.Module, "__setattr__",
                        lambda self, name, value: (assigned.append(name),
                                                   original(self, name, value)))
    model._current_fx_name = "training_step"  # as Lightning does around each hook call
    model.extra = linear
    assert model._current_fx_name == "training_step"
    assert assigned == ["extra"] and "extra" in dict(model.named_children())
    assert isinstance(model, LeanHookModule)
