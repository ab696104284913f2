"""Config values that no component can check until too late: one-line errors naming the key and
its valid range, raised before anything is built."""

import math

from omegaconf import DictConfig, ListConfig, OmegaConf

#: the largest seed numpy (and so Lightning's seed_everything) accepts
MAX_SEED = 2**32 - 1
#: model config keys that hold layer sizes (hidden units, conv channels), at any depth
LAYER_SIZE_KEYS = ("hidden_dims", "channels")


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


def check_layer_sizes(node, key: str) -> None:
    """Every hidden_dims/channels list under `node` holds whole numbers >= 1 (a layer of 0
    units trains silently into a constant)."""
    if isinstance(node, DictConfig):
        for name, value in node.items():
            if name in LAYER_SIZE_KEYS and isinstance(value, ListConfig):
                for i, size in enumerate(value):
                    check_number(f"{key}.{name}[{i}]", size, low=1, integer=True)
            else:
                check_layer_sizes(value, f"{key}.{name}")


def check_train_config(cfg: DictConfig) -> None:
    """The seed, the model's size, KL weight, layer sizes and learning rate (the nets are
    built before the VAE that checks them), the batch sizes and the trainer's epochs."""
    check_number("seed", cfg.get("seed"), low=0, high=MAX_SEED, integer=True)
    check_number("model.latent_dim", cfg.model.get("latent_dim"), low=1, integer=True)
    check_number("model.beta", cfg.model.get("beta", 1.0), low=0)
    check_layer_sizes(cfg.model, "model")
    optimizer = cfg.model.get("optimizer")
    if isinstance(optimizer, DictConfig) and "lr" in optimizer:
        check_number("model.optimizer.lr", optimizer.lr, low=0)
    check_number("data.batch_size", cfg.data.get("batch_size", 1), low=1, integer=True)
    if cfg.data.get("eval_batch_size") is not None:
        check_number("data.eval_batch_size", cfg.data.eval_batch_size, low=1, integer=True)
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and epochs != -1:
        check_number("trainer.max_epochs", epochs, low=1, integer=True)
