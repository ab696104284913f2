"""What a checkpoint's stored config may build.

vaelab-eval, -viz, -attr and -report rebuild a run's model and data with Hydra from the config
stored in its checkpoint, and Hydra imports and calls whatever a `_target_` names. Loading the
file with weights_only=True cannot see that: a crafted config could name torch.load on embedded
bytes, numpy.load with allow_pickle, builtins.open(path, "w"), or any importable module. So the
stored config is checked before anything is built, and refused (one line naming the key) unless

- every `_target_` is one of vaelab's own classes (defined in a vaelab module and reached
  through vaelab modules only, so `vaelab.some_module.torch.load` is not one), one of the
  vaelab functions that configs name (VAELAB_FUNCTIONS), or one of ALLOWED_TARGETS (the torch
  optimisers and learning-rate schedulers);
- no node passes positional arguments (`_args_`), and every value is what a resolved config
  written by vaelab-train holds: mappings with string keys, lists, strings without
  interpolations (`${...}` would call resolvers), numbers, booleans and null; never bytes or
  tensors.

`trust_checkpoint_config=true` (vaelab-report: `--trust-checkpoint-config`) skips the check for
a file whose origin the user trusts, e.g. one of their own runs with their own components.
"""

import importlib
import inspect
from collections.abc import Iterable
from types import ModuleType

#: callables outside vaelab that a stored model or data config may name: torch's optimisers and
#: learning-rate schedulers (schedulers that take callables, LambdaLR and friends, are left out)
ALLOWED_TARGETS = frozenset(
    [f"torch.optim.{name}" for name in (
        "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "ASGD", "NAdam", "RAdam",
        "RMSprop", "Rprop", "SGD")]
    + [f"torch.optim.lr_scheduler.{name}" for name in (
        "ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
        "ExponentialLR", "LinearLR", "MultiStepLR", "OneCycleLR", "PolynomialLR",
        "ReduceLROnPlateau", "StepLR")])
#: vaelab functions that configs name as `_target_` (every vaelab class may be named; vaelab's
#: other functions may not: some write files, e.g. run_dir.write_json)
VAELAB_FUNCTIONS = frozenset({"vaelab.callbacks.progress.progress_bar"})
#: Hydra's keys of a node that names a `_target_`, but `_args_` (positional arguments)
SPECIAL_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_"})
_SCALARS = (str, int, float, bool, type(None))


class UntrustedConfigError(ValueError):
    """A checkpoint's stored config names something vaelab does not build from a file."""


def check_stored_config(config, sections: Iterable[str], source: str) -> None:
    """Raise UntrustedConfigError unless the `sections` (e.g. "model", "data") of a stored
    config (plain containers, as torch.load returns them) are safe to build."""
    if not isinstance(config, dict):
        _refuse(source, "run_config", "is not a mapping")
    for section in sections:
        _check_node(config.get(section), section, source)


def _refuse(source: str, key: str, why: str):
    raise UntrustedConfigError(
        f"{source}: its stored config's {key} {why}, which a config written by vaelab-train "
        "never holds; refusing to build the run from it, as a crafted config can run code or "
        "write files. If you trust this file (e.g. your own run with your own components), "
        "pass trust_checkpoint_config=true")


def _check_node(node, key: str, source: str) -> None:
    if isinstance(node, dict):
        for name, value in node.items():
            if not isinstance(name, str):
                _refuse(source, key, f"has a key {name!r} that is not a string")
            if name.startswith("_") and name.endswith("_") and name not in SPECIAL_KEYS:
                _refuse(source, f"{key}.{name}", "passes positional arguments or an unknown "
                        "Hydra option")
            _check_node(value, f"{key}.{name}", source)
        if "_target_" in node:
            _check_target(node["_target_"], f"{key}._target_", source)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _check_node(value, f"{key}[{i}]", source)
    elif not isinstance(node, _SCALARS):
        _refuse(source, key, f"holds a {type(node).__name__}")
    elif isinstance(node, str) and "${" in node:
        _refuse(source, key, f"holds an interpolation ({node[:60]!r})")


def _check_target(target, key: str, source: str) -> None:
    if not isinstance(target, str):
        _refuse(source, key, f"is a {type(target).__name__}, not a name")
    if target in ALLOWED_TARGETS or target in VAELAB_FUNCTIONS or vaelab_class(target):
        return
    _refuse(source, key, f"names {target[:80]}, which is not one of vaelab's classes, its "
            "named functions or the allowed torch optimisers and schedulers")


def vaelab_class(target: str) -> bool:
    """Whether `target` names a class defined in vaelab, reached through vaelab modules only
    (importing nothing outside vaelab)."""
    parts = target.split(".")
    if len(parts) < 2 or parts[0] != "vaelab" or not all(
            p.isidentifier() and not p.startswith("__") for p in parts):
        return False
    obj: object = importlib.import_module("vaelab")
    for depth, part in enumerate(parts[1:], start=2):
        if not _vaelab_module(obj):
            return False  # e.g. vaelab.checkpoints.torch.load: torch is no vaelab module
        child = getattr(obj, part, None)
        if child is None:
            try:
                child = importlib.import_module(".".join(parts[:depth]))
            except ImportError:
                return False
        obj = child
    return inspect.isclass(obj) and _in_vaelab(obj.__module__)


def _vaelab_module(obj: object) -> bool:
    return isinstance(obj, ModuleType) and _in_vaelab(obj.__name__)


def _in_vaelab(module_name: str) -> bool:
    return module_name == "vaelab" or module_name.startswith("vaelab.")
