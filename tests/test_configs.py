"""Every option of every config group composes and resolves: no broken interpolation, no
option that only fails when someone first picks it."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from vaelab.configs import CONFIG_DIR, compose_config

ROOT = Path(CONFIG_DIR)
#: groups whose options are picked by other configs, not on their own
NOT_ALONE = {"local"}


def options() -> list[tuple[str, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.yaml")):
        group = str(path.parent.relative_to(ROOT))
        if group != "." and group not in NOT_ALONE:
            found.append((group, path.stem))
    return found


def compose(tmp_path, override: str):
    try:
        return compose_config("train", [override], tmp_path)
    except ConfigCompositionException as error:
        if "use +" not in str(error) and "not found in the defaults" not in str(error):
            raise
        return compose_config("train", [f"+{override}"], tmp_path)  # not a default of train


@pytest.mark.parametrize("group, option", options(), ids=[f"{g}={o}" for g, o in options()])
def test_every_option_composes_and_resolves(tmp_path, group, option):
    cfg = compose(tmp_path, f"{group}={option}")
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.to_container(task, resolve=True, throw_on_missing=False)


def test_there_are_options_to_compose():
    groups = {group for group, _ in options()}
    assert {"data", "model/encoder", "model/likelihood", "trainer", "logger", "callbacks",
            "experiment", "hydra/launcher", "figures"} <= groups


#: recipes whose point is a likelihood option (celeba_beta_vae: a fixed Gaussian scale); swapping
#: their likelihood needs `~model.likelihood.<option>` too
LIKELIHOOD_RECIPES = {"celeba_beta_vae"}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "experiment").glob("*.yaml")
                                              if p.stem not in LIKELIHOOD_RECIPES))
def test_every_recipe_takes_every_likelihood(tmp_path, experiment):
    """Swapping model/likelihood on a recipe's command line must not fail on a key the recipe
    left in the likelihood's config."""
    from hydra.utils import instantiate

    for likelihood in sorted(p.stem for p in (ROOT / "model" / "likelihood").glob("*.yaml")):
        cfg = compose_config("train", [f"experiment={experiment}",
                                       f"model/likelihood={likelihood}"], tmp_path)
        assert instantiate(cfg.model.likelihood) is not None, likelihood
