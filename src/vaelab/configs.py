"""Where the Hydra configs live, and composing them outside a command line (tests, scripts)."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

_PACKAGED = Path(__file__).resolve().parent / "conf"
_REPO = Path(__file__).resolve().parents[2] / "conf"
#: conf/ inside an installed wheel, else the repository's conf/ (editable installs).
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else _REPO)

#: Longest multirun job folder name; most file systems allow 255 bytes.
MAX_DIRNAME = 200


def path_safe(name: str) -> str:
    """One folder name from an override string: '/' -> '.', cut to MAX_DIRNAME characters."""
    return name.replace("/", ".")[:MAX_DIRNAME]


def sweep_group(task_name: str) -> str | None:
    """`<task_name>/<sweep folder>` inside a Hydra multirun (shared by its jobs), else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return f"{task_name}/{Path(hydra_cfg.sweep.dir).name}"


def run_dir_of(ckpt_path: str) -> str:
    """The run a checkpoint belongs to: <run> for <run>/checkpoints/<name>.ckpt, else its folder."""
    folder = Path(ckpt_path).expanduser().absolute().parent
    return str(folder.parent if folder.name == "checkpoints" else folder)


def register_resolvers() -> None:
    """Resolvers the configs use: ${vaelab.path_safe:..} (job folder names),
    ${vaelab.sweep_group:${task_name}}, ${vaelab.join:${tags}}, ${vaelab.basename:..} and
    ${vaelab.run_dir_of:${ckpt_path}} (where vaelab-eval writes)."""
    OmegaConf.register_new_resolver("vaelab.path_safe", path_safe, replace=True)
    OmegaConf.register_new_resolver("vaelab.basename", lambda path: Path(path).name, replace=True)
    OmegaConf.register_new_resolver("vaelab.sweep_group", sweep_group, replace=True)
    OmegaConf.register_new_resolver("vaelab.run_dir_of", run_dir_of, replace=True)
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
