"""One-line errors for config values, naming the key and its valid range, and the options a
command requires (a leaf: the models, the data, the commands and the run's config checks use it).
"""

import math

from omegaconf import DictConfig, OmegaConf


def check_number(key: str, value, low: float, integer: bool = False,
                 high: float = math.inf) -> None:
    """Raise a ValueError `<key>=<value>: give a (whole) number >= <low>` unless value is a
    finite (whole) number in [low, high]."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high \
            or not math.isfinite(value):
        infinite = isinstance(value, float) and not math.isfinite(value)
        kind = "a whole number" if integer else "a finite number" if infinite else "a number"
        limit = f"between {low:g} and {high:.0f}" if high < math.inf else f">= {low:g}"
        raise ValueError(f"{key}={value!r}: give {kind} {limit}")


#: the options each command needs, with an example of the command line that gives them
REQUIRED = {
    "eval": {"ckpt_path": "vaelab-eval ckpt_path=<run dir>/checkpoints/last.ckpt"},
    "viz": {"ckpt_path": "vaelab-viz ckpt_path=<run dir>/checkpoints/last.ckpt"},
    "attr": {"ckpt_path": "vaelab-attr ckpt_path=<run dir>/checkpoints/last.ckpt "
                          "attribute=<an attribute or class>",
             "attribute": "vaelab-attr ckpt_path=... attribute=<an attribute (Eyeglasses, "
                          "shape:heart) or a class (0-9)>"},
}


def check_required(cfg: DictConfig, command: str) -> None:
    """A one-line error naming the first option of REQUIRED[command] that was not given."""
    for key, example in REQUIRED[command].items():
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
            raise ValueError(f"{key}= is required: {example} (vaelab-{command} --help)")
