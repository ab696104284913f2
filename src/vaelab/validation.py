"""Config values that no component can check until too late: one-line errors naming the key and
its valid range, raised before anything is built."""

from omegaconf import DictConfig


def check_number(key: str, value, low: float, integer: bool = False) -> None:
    """Raise a ValueError `<key>=<value>: give a (whole) number >= <low>` unless value fits."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= low:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{key}={value!r}: give {kind} >= {low:g}")


def check_train_config(cfg: DictConfig) -> None:
    """The model's size and KL weight (the nets are built before the VAE that checks them) and
    the trainer's epochs."""
    check_number("model.latent_dim", cfg.model.get("latent_dim"), low=1, integer=True)
    check_number("model.beta", cfg.model.get("beta", 1.0), low=0)
    check_model_components(cfg.model)
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and epochs != -1:
        check_number("trainer.max_epochs", epochs, low=1, integer=True)


def _component_class(node: DictConfig, key: str, default: str) -> type:
    from hydra.utils import get_class

    target = (node.get(key) or {}).get("_target_", default)
    return get_class(target)


def check_model_components(model: DictConfig) -> None:
    """The prior, posterior, objective, KL schedule and condition compose (one line naming the
    conflict otherwise; vaelab.models.compatibility), checked from their classes alone."""
    from hydra.utils import get_class

    from vaelab.models.compatibility import check_components

    check_components(
        _component_class(model, "prior", "vaelab.models.StandardNormalPrior"),
        _component_class(model, "posterior", "vaelab.models.DiagonalGaussianPosterior"),
        _component_class(model, "objective", "vaelab.models.Elbo"),
        _component_class(model, "kl_schedule", "vaelab.models.kl_schedules.ConstantBeta"),
        model.get("condition"),
        getattr(get_class(model.get("_target_", "vaelab.models.VAE")), "hierarchical", False))
