"""A checkpoint's stored config builds only vaelab's own components (and torch's optimisers and
schedulers): a crafted config is refused, naming the key, before anything runs."""

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vaelab.checkpoints import load_run
from vaelab.configs import CONFIG_DIR, compose_config
from vaelab.data import DigitsDataModule
from vaelab.run_dir import task_config
from vaelab.trust import UntrustedConfigError, check_stored_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
DATA = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))


class OwnDigits(DigitsDataModule):
    """Test helper: a user's own component, outside vaelab."""


def stored_config(tmp_path, overrides=()) -> dict:
    """The run config vaelab-train stores in its checkpoints."""
    cfg = compose_config("train", list(overrides), tmp_path)
    return OmegaConf.to_container(task_config(cfg), resolve=True, enum_to_str=True)


@pytest.mark.parametrize("overrides", [[f"experiment={e}"] for e in EXPERIMENTS]
                         + [[f"data={d}", "paths.data_dir=/data"] for d in DATA]
                         + [["model/scheduler=burda"], ["model/scheduler=plateau"]])
def test_every_shipped_config_is_trusted(tmp_path, overrides):
    check_stored_config(stored_config(tmp_path, overrides), ("model", "data"), "run.ckpt")


@pytest.fixture
def write_checkpoint(tmp_path):
    """write_checkpoint(change) -> a checkpoint of the default run whose stored config
    `change(config)` edited, as a crafted file would."""
    cfg = compose_config("train", [], tmp_path)
    state_dict = instantiate(cfg.model).state_dict()

    def _write(change) -> Path:
        config = stored_config(tmp_path)
        change(config)
        path = tmp_path / "crafted.ckpt"
        torch.save({"state_dict": state_dict, "run_config": config}, path)
        return path

    return _write


def set_key(key: str, value):
    def change(config: dict) -> None:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value

    return change


@pytest.mark.parametrize("key, value, named", [
    # a file truncated by builtins.open(path, "w")
    ("data._target_", "builtins.open", "data._target_"),
    # re-exported torch.load reached through a vaelab module, on embedded bytes
    ("model.optimizer._target_", "vaelab.checkpoints.torch.load", "model.optimizer._target_"),
    ("data._target_", "numpy.load", "data._target_"),
    # a vaelab function that writes a file
    ("data._target_", "vaelab.run_dir.write_json", "data._target_"),
    ("model.encoder._args_", [b"\x80\x02payload"], "model.encoder._args_"),
    ("model.encoder.hidden_dims", [b"bytes"], "model.encoder.hidden_dims[0]"),
    ("data.val_size", "${oc.env:HOME}", "data.val_size"),  # resolvers run on access
    ("model.likelihood", {"_target_": "os.system", "command": "touch x"},
     "model.likelihood._target_"),
    ("data.image_shape", torch.zeros(3), "data.image_shape"),
])
def test_a_crafted_stored_config_is_refused_naming_its_key(write_checkpoint, tmp_path, key,
                                                            value, named):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ckpt = write_checkpoint(set_key(key, value))
    with pytest.raises(UntrustedConfigError,
                       match=rf"stored config's {re.escape(named)} .*trust_checkpoint_config"):
        load_run(ckpt)
    assert victim.read_text() == "precious" and not (tmp_path / "x").exists()


def test_a_trusted_file_builds_the_users_own_components(write_checkpoint):
    ckpt = write_checkpoint(set_key("data._target_", f"{__name__}.OwnDigits"))
    with pytest.raises(UntrustedConfigError, match="data._target_ names test_trust.OwnDigits"):
        load_run(ckpt)
    _, _, data = load_run(ckpt, trust_config=True)
    assert isinstance(data, OwnDigits)


@pytest.mark.integration
def test_vaelab_eval_refuses_a_crafted_config_unless_trusted(write_checkpoint, make_cfg,
                                                             tmp_path):
    from vaelab.eval import evaluate

    ckpt = write_checkpoint(set_key("data._target_", f"{__name__}.OwnDigits"))
    common = [f"ckpt_path={ckpt}", "fid.enabled=false", "iwae.num_samples=2", "logger=none"]
    with pytest.raises(UntrustedConfigError):
        evaluate(make_cfg(common, name="eval", output_dir=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()  # refused before anything was written
    metrics = evaluate(make_cfg([*common, "trust_checkpoint_config=true"], name="eval",
                                output_dir=tmp_path / "trusted"))
    assert metrics["test/elbo"] < 0
