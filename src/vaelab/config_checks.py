"""The training config checked before anything is built: one-line errors naming the key and its
valid range, and components that do not compose."""

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig

from vaelab.models.compatibility import check_components
from vaelab.validation import check_number

#: the largest seed numpy (and so Lightning's seed_everything) accepts
MAX_SEED = 2**32 - 1
#: model config keys that hold layer sizes (hidden units, conv channels), at any depth
LAYER_SIZE_KEYS = ("hidden_dims", "channels")


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
    check_model_components(cfg.model)
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


def _component_class(node: DictConfig, key: str, default: str) -> type:
    target = (node.get(key) or {}).get("_target_", default)
    return get_class(target)


def check_model_components(model: DictConfig) -> None:
    """The prior, posterior, objective, KL schedule and condition compose (one line naming the
    conflict otherwise; vaelab.models.compatibility), checked from their classes alone."""
    check_components(
        _component_class(model, "prior", "vaelab.models.StandardNormalPrior"),
        _component_class(model, "posterior", "vaelab.models.DiagonalGaussianPosterior"),
        _component_class(model, "objective", "vaelab.models.Elbo"),
        _component_class(model, "kl_schedule", "vaelab.models.kl_schedules.ConstantBeta"),
        model.get("condition"),
        getattr(get_class(model.get("_target_", "vaelab.models.VAE")), "hierarchical", False))
