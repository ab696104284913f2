"""Every option of every config group composes and resolves: no broken interpolation, no
option that only fails when someone first picks it."""

import itertools
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from vaelab.configs import CONFIG_DIR, compose_config

ROOT = Path(CONFIG_DIR)
#: groups whose options are picked by other configs, not on their own
NOT_ALONE = {"local"}
#: groups that belong to one model: composed with it
PARENT = {"model/ladder": ["model=hvae"]}


def options() -> list[tuple[str, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.yaml")):
        group = str(path.parent.relative_to(ROOT))
        if group != "." and group not in NOT_ALONE:
            found.append((group, path.stem))
    return found


def compose(tmp_path, override: str):
    parent = PARENT.get(override.partition("=")[0], [])
    try:
        return compose_config("train", [*parent, override], tmp_path)
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


# -- the latent model's components: every combination trains or is refused at config time -------
#: (config group, options); model.condition is a value
COMPONENTS = {
    group: sorted(p.stem for p in (ROOT / group).glob("*.yaml"))
    for group in ("model/prior", "model/posterior", "model/objective", "model/kl_schedule",
                  "model/likelihood")
}
#: the model and its nets: the VAE's encoder (the decoder follows it), the hierarchy's ladder
NETS = [*(f"vae:{o}" for o in sorted(p.stem for p in (ROOT / "model/encoder").glob("*.yaml"))),
        *(f"hvae:{o}" for o in sorted(p.stem for p in (ROOT / "model/ladder").glob("*.yaml")))]
CONDITIONS = ["null", "label", "attributes"]
TARGETS = {(group, option): OmegaConf.load(ROOT / group / f"{option}.yaml").get("_target_")
           for group, options_ in COMPONENTS.items() for option in options_}
#: small nets, so the cover trains quickly
SMALL = {"vae:mlp": ["model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]"],
         "vae:conv": ["model.encoder.channels=[8,16]", "model.decoder.channels=[16,8]"],
         "hvae:mlp": ["model.ladder.latent_dims=[4,2]", "model.ladder.encoder_hidden=[32]",
                      "model.ladder.up_hidden=[16]", "model.ladder.down_hidden=[16]",
                      "model.ladder.decoder_hidden=[32]"],
         "hvae:residual": ["model.ladder.width=8", "model.ladder.latent_channels=2"]}


def combinations() -> list[dict[str, str]]:
    groups = [*COMPONENTS, "nets", "condition"]
    values = [*COMPONENTS.values(), NETS, CONDITIONS]
    return [dict(zip(groups, combo)) for combo in itertools.product(*values)]


def problem(combo: dict[str, str]) -> str | None:
    from hydra.utils import get_class

    from vaelab.models.compatibility import incompatibility

    def cls(group):
        return get_class(TARGETS[(group, combo[group])])

    condition = None if combo["condition"] == "null" else combo["condition"]
    return incompatibility(cls("model/prior"), cls("model/posterior"), cls("model/objective"),
                           cls("model/kl_schedule"), condition,
                           hierarchical=combo["nets"].startswith("hvae:"))


def overrides(combo: dict[str, str]) -> list[str]:
    model, nets = combo["nets"].split(":")
    found = [f"model={model}", *(f"{g}={o}" for g, o in combo.items() if g in COMPONENTS)]
    found += ([f"model/encoder={nets}", f"model/decoder={nets}"] if model == "vae"
              else [f"model/ladder={nets}"])
    found.append(f"model.condition={combo['condition']}")
    if combo["model/objective"] == "factor_vae":
        found.append("model.objective.discriminator.hidden_dims=[16]")
    if combo["model/prior"] == "vamp":
        found.append("model.prior.num_pseudo_inputs=10")
    if combo["model/posterior"] == "iaf":
        found.append("model.posterior.hidden_dims=[16]")
    if combo["model/kl_schedule"] != "capacity" and combo["model/objective"] == "beta_tcvae":
        found.append("model.beta=2")
    return [*found, *SMALL[combo["nets"]]]


def pairwise_cover(combos: list[dict[str, str]]) -> list[dict[str, str]]:
    """A few combinations that between them contain every pair of options that any of
    `combos` contains (greedy)."""
    def pairs(combo):
        return set(itertools.combinations(sorted(combo.items()), 2))

    uncovered = set().union(*(pairs(c) for c in combos))
    chosen = []
    while uncovered:
        best = max(combos, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def test_every_combination_of_components_is_allowed_or_refused_in_one_line():
    combos = combinations()
    assert len(combos) == 4 * 2 * 6 * 6 * 5 * 4 * 3
    refusals = {problem(c) for c in combos} - {None}
    allowed = [c for c in combos if problem(c) is None]
    # every option of every group trains with some choice of the others
    for group, options_ in [*COMPONENTS.items(), ("nets", NETS), ("condition", CONDITIONS)]:
        assert {c[group] for c in allowed} == set(options_), group
    for message in refusals:
        assert "\n" not in message and ": use " in message, message
    # the refusals are the documented conflicts, each naming the options involved
    assert any("model/prior=vamp" in m and "model.condition=label" in m for m in refusals)
    assert any("model/objective=dip_vae_i needs a diagonal Gaussian" in m
               and "model/posterior=iaf" in m for m in refusals)
    assert any("model/kl_schedule=free_bits needs a KL per latent dimension" in m
               and "model/prior=mixture_of_gaussians" in m for m in refusals)
    assert any("model/objective=beta_tcvae needs" in m for m in refusals)
    assert any("does not schedule the KL term" in m for m in refusals)
    for objective in ("beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii"):
        assert any(f"model/objective={objective} works on one flat latent layer, which "
                   "model=hvae" in m for m in refusals), objective
    hierarchical = {c["model/objective"] for c in allowed if c["nets"].startswith("hvae")}
    assert hierarchical == {"elbo", "iwae"}


@pytest.mark.integration
def test_a_pairwise_cover_of_the_allowed_combinations_trains_a_step(tmp_path):
    """Every pair of options that may be combined is trained together at least once (on the
    digits, one optimiser step's loss and gradients, no Trainer)."""
    import torch
    from hydra.utils import instantiate

    allowed = [c for c in combinations() if problem(c) is None]
    cover = pairwise_cover(allowed)
    data = None
    for combo in cover:
        cfg = compose_config("train", overrides(combo), tmp_path)
        if data is None:
            data = instantiate(cfg.data)
            data.setup()
            images, labels = data.images("train")[:32], data.labels("train")[:32]
        model = instantiate(cfg.model).train()
        model.setup_data(data, fitting=True)
        loss = model.training_step((data.model_input(images, train=True), labels), 0)
        loss.backward()
        assert torch.isfinite(loss), combo
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for name, p in model.named_parameters()
                   if not name.startswith(("objective.", "likelihood."))), combo
    assert len(cover) < 80


@pytest.mark.parametrize("given, named", [
    (["model/prior=vamp", "model.condition=label"], ["model/prior=vamp", "model.condition=label"]),
    (["model/posterior=iaf", "model/objective=dip_vae_ii"],
     ["model/objective=dip_vae_ii", "model/posterior=iaf"]),
    (["model/prior=flow", "model/kl_schedule=free_bits"],
     ["model/kl_schedule=free_bits", "model/prior=flow"]),
    (["model/posterior=iaf", "model/objective=beta_tcvae", "model.beta=2"],
     ["model/objective=beta_tcvae", "model/posterior=iaf"]),
    (["model/objective=iwae", "model/kl_schedule=cyclical"],
     ["model/objective=iwae", "model/kl_schedule=cyclical"]),
    (["model=hvae", "model/objective=dip_vae_i"], ["model/objective=dip_vae_i", "model=hvae"]),
])
def test_a_refused_combination_stops_at_config_time(given, named, tmp_path):
    from vaelab.config_checks import check_train_config

    cfg = compose_config("train", given, tmp_path)
    with pytest.raises(ValueError) as error:
        check_train_config(cfg)  # from the classes alone, before anything is built
    assert all(name in str(error.value) for name in named), str(error.value)
