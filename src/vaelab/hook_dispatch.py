"""Lightning's training-step hook calls, without the bookkeeping of calls that do nothing.

Every training step Lightning calls six hooks (on_train_batch_start/_end,
on_before/after_backward, on_before_optimizer_step, on_before_zero_grad) on every callback and
on the module, each inside a profiler context with a freshly formatted name, and sets the
module's `_current_fx_name` before and after each call. With vaelab's ten callbacks that
bookkeeping cost mnist_2d's small MLP several percent of a step, though nearly all of those
hooks are the base classes' no-ops (README, Performance). Nothing that runs changes here:

- `skip_noop_hooks`: Lightning calls a hook only if it is callable, so each of these hooks an
  object inherits unchanged from the base class is set to None on that object;
- `LeanHookModule`: the module stores `_current_fx_name` directly rather than through
  nn.Module.__setattr__, whose checks for parameters, buffers and submodules cost ~3 us a time.
"""

from collections.abc import Iterable

import lightning as L

#: the hooks Lightning calls every training step on callbacks and on the module, no-ops in
#: lightning.Callback and LightningModule (the module's validation and test batch hooks stay:
#: Lightning inspects their signatures)
TRAIN_STEP_HOOKS = ("on_train_batch_start", "on_before_zero_grad", "on_before_backward",
                    "on_after_backward", "on_before_optimizer_step", "on_train_batch_end")


def noop_hooks(obj: object, base: type) -> list[str]:
    """The training-step hooks that `obj`'s class inherits unchanged from `base`."""
    return [name for name in TRAIN_STEP_HOOKS
            if getattr(type(obj), name, None) is getattr(base, name)]


def skip_noop_hooks(callbacks: Iterable[L.Callback], module: L.LightningModule) -> None:
    """Make Lightning skip, for each callback and the module, the training-step hooks they
    inherit as no-ops (an overridden hook still runs, every step)."""
    for obj, base in [*((c, L.Callback) for c in callbacks), (module, L.LightningModule)]:
        for name in noop_hooks(obj, base):
            setattr(obj, name, None)


class LeanHookModule(L.LightningModule):
    """A LightningModule whose `_current_fx_name` (set by Lightning around every hook call,
    some 40 times a training step) is a plain attribute, not a checked nn.Module one."""

    def __setattr__(self, name: str, value) -> None:
        if name == "_current_fx_name":
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)
