"""Where the Hydra configs live, their resolvers and schemas, and composing them outside a
command line (tests, scripts).

Importing this module registers the resolvers and schemas: every process that composes vaelab's
configs imports it (the console commands, compose_config, and the workers of the joblib and
submitit launchers, which import vaelab.cli to unpickle the task function).
"""

import inspect
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from vaelab.run_dir import multirun, run_dir_of
from vaelab.schemas import register_schemas

_PACKAGED = Path(__file__).resolve().parent / "conf"
_REPO = Path(__file__).resolve().parents[2] / "conf"
#: conf/ inside an installed wheel, else the repository's conf/ (editable installs).
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _REPO)

#: Longest multirun job folder name; most file systems allow 255 bytes.
MAX_DIRNAME = 120
#: characters a job folder name keeps; the rest become "_" (Hydra's override grammar rejects
#: "=", ",", brackets and quotes in values, so such folders could not be passed as ckpt_path=)
_SAFE = re.compile(r"[^A-Za-z0-9._+@:%-]")


def short_value(value: str) -> str:
    """A value as a folder name shows it: floats to 4 significant digits (the exact values are
    in the job's .hydra/overrides.yaml)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "e" not in value.lower() else f"{number:.4g}"


def swept_keys(sweep_dir: str | None) -> set[str] | None:
    """The keys a multirun sweeps (comma lists, ranges, and the sweeper's params), read from the
    multirun.yaml Hydra writes into the sweep folder before launching; None if unknown."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir or "") / "multirun.yaml"
    if not sweep_dir or not path.is_file():
        return None
    config = OmegaConf.load(path)
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    keys = {str(k) for k in params}
    try:
        parsed = OverridesParser.create().parse_overrides(
            list(OmegaConf.select(config, "hydra.overrides.task", default=[])))
    except Exception:  # an override this parser cannot read back: name folders by all keys
        return None
    return keys | {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}


def job_dirname(overrides: Sequence[str], exclude_keys: Sequence[str],
                sweep_dir: str | None = None) -> str:
    """A readable folder name for a multirun job from its overrides, e.g. `beta-4_latent_dim-16`
    for ["model.beta=4", "model.latent_dim=16"]: only the swept keys (when the sweep's
    multirun.yaml says which), each by its last part (unless two share it), "-" between key and
    value, "_" between items. Keys in `exclude_keys`, and the keys under them (trainer.*,
    callbacks.*), are left out."""
    swept = swept_keys(sweep_dir)
    pairs = []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if any(key == k or key.startswith(f"{k}.") for k in exclude_keys):
            continue
        if swept is None or key in swept:
            pairs.append((key.replace("/", "."), short_value(value)))
    lasts = [k.rsplit(".", 1)[-1] for k, _ in pairs]
    names = [last if lasts.count(last) == 1 else key for (key, _), last in zip(pairs, lasts)]
    joined = "_".join(f"{name}-{value}" for name, (_, value) in zip(names, pairs))
    return _SAFE.sub("_", joined)[:MAX_DIRNAME] or "defaults"


def sweep_group(task_name: str) -> str | None:
    """`<task_name>/<sweep folder>` inside a Hydra multirun (shared by its jobs), else None."""
    if not multirun():
        return None
    return f"{task_name}/{Path(HydraConfig.get().sweep.dir).name}"


def named_output_dir() -> bool:
    """Whether the command line named the run (or sweep) directory: hydra.run.dir=..."""
    if not HydraConfig.initialized():
        return True
    given = HydraConfig.get().overrides.hydra
    return any(o.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for o in given)


def param_channels(likelihood: DictConfig, image_shape: Sequence[int]) -> int:
    """`param_channels(C, **options)` of the likelihood's `_target_` class, given the keys of the
    likelihood config that the method names as parameters (others are constructor-only)."""
    target = likelihood.get("_target_")
    if target is None:
        raise ValueError("model.likelihood has no _target_: name the likelihood class, e.g. "
                         "model/likelihood=bernoulli (conf/model/likelihood/)")
    cls = get_class(target)
    if not hasattr(cls, "param_channels"):
        raise ValueError(f"{target} has no param_channels classmethod: subclass "
                         "vaelab.models.Likelihood, or set model.decoder.out_channels yourself")
    return cls.param_channels(image_shape[0], **_options(likelihood, cls.param_channels))


def _options(node: DictConfig, method, skip: int = 1) -> dict:
    """The keys of a component's config that `method` takes as options (after its first `skip`
    parameters, which the caller gives), resolved one by one (so the node's other keys may
    refer back to the value being computed)."""
    names = list(inspect.signature(method).parameters)[skip:]
    return {key: OmegaConf.to_container(node[key], resolve=True) if OmegaConf.is_config(node[key])
            else node[key] for key in names if key in node}


def posterior_features(posterior: DictConfig, latent_dim: int) -> int:
    """`param_features(latent_dim, **options)` of the posterior's `_target_` class: the encoder's
    output size."""
    cls = get_class(posterior["_target_"])
    return cls.param_features(latent_dim, **_options(posterior, cls.param_features))


def latent_size(ladder: DictConfig, which: str) -> int:
    """The size of a latent hierarchy's codes from its ladder's config (the class's `sizes`):
    `total`, every layer's, or `top`, the top layer's (what its prior and posterior see)."""
    sizes = get_class(ladder["_target_"]).sizes
    sizes = sizes(**_options(ladder, sizes, skip=0))
    if which not in ("total", "top"):
        raise ValueError(f"vaelab.latent_size takes total or top, got {which!r}")
    return sum(sizes) if which == "total" else sizes[-1]


def condition_dim(condition: str | None, data: DictConfig) -> int:
    """The length of a conditional model's condition vectors, asked of the DataModule class
    (`condition_size(kind, options)`); 0 without a condition."""
    if condition is None:
        return 0
    cls = get_class(data["_target_"])
    if not hasattr(cls, "condition_size"):
        raise ValueError(f"{data['_target_']} cannot say how long its conditions are: set "
                         "model.condition_dim yourself")
    return cls.condition_size(condition, OmegaConf.to_container(data, resolve=True))


def eval_dir(ckpt_path: str | None, fallback: str) -> str:
    """Where vaelab-eval writes by default: <run>/eval for a checkpoint file of <run>, else
    `fallback` (a missing or mistyped ckpt_path makes no folder beside it)."""
    if ckpt_path and Path(str(ckpt_path)).expanduser().is_file():
        return str(Path(run_dir_of(ckpt_path)) / "eval")
    return fallback


def basename(path: str | None) -> str | None:
    return None if path is None else Path(path).name


def register_resolvers() -> None:
    """Resolvers the configs use: ${vaelab.job_dirname:..} (job folder names),
    ${vaelab.sweep_group:${task_name}}, ${vaelab.join:${tags}}, ${vaelab.basename:..},
    ${vaelab.eval_dir:..} (where vaelab-eval writes), ${vaelab.param_channels:..} (a decoder's
    output channels), ${vaelab.posterior_features:..} (an encoder's),
    ${vaelab.condition_dim:..} (a conditional model's condition length) and
    ${vaelab.latent_size:..} (a latent hierarchy's code sizes)."""
    OmegaConf.register_new_resolver("vaelab.job_dirname", job_dirname, replace=True)
    OmegaConf.register_new_resolver("vaelab.basename", basename, replace=True)
    OmegaConf.register_new_resolver("vaelab.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("vaelab.eval_dir", eval_dir, replace=True)
    OmegaConf.register_new_resolver("vaelab.param_channels", param_channels, replace=True)
    OmegaConf.register_new_resolver("vaelab.posterior_features", posterior_features,
                                    replace=True)
    OmegaConf.register_new_resolver("vaelab.condition_dim", condition_dim, replace=True)
    OmegaConf.register_new_resolver("vaelab.latent_size", latent_size, replace=True)
    OmegaConf.register_new_resolver("vaelab.join", lambda items: ",".join(map(str, items)),
                                    replace=True)


def compose_config(config_name: str, overrides: list[str], output_dir: str | Path) -> DictConfig:
    """Compose `config_name` with overrides as the command line would, writing to output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


register_resolvers()
register_schemas()
