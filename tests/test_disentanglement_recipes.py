"""The Locatello et al. (2019) recipes: dsprites_* and sprites_* compose to the paper's networks,
objectives and strengths, the sweeps cover objectives x strengths x seeds, and every sprites
recipe trains a step on a tiny grid."""

import math

import pytest
from omegaconf import OmegaConf

from vaelab.configs import compose_config
from vaelab.train import train

RECIPES = {  # recipe suffix -> (objective class, {config key: value})
    "beta_vae": ("Elbo", {"model.beta": 4}),
    "beta_tcvae": ("BetaTCVAE", {"model.beta": 6, "model.objective.estimator": "mws"}),
    "factor_vae": ("FactorVAE", {"model.beta": 1.0, "model.objective.gamma": 40}),
    "dip_vae": ("DipVAEI", {"model.beta": 1.0, "model.objective.lambda_od": 10,
                            "model.objective.lambda_d": 100}),
}
#: Locatello et al.'s six strengths per method, and the key that holds them
STRENGTHS = {
    "beta_vae": ("model.beta", [1, 2, 4, 6, 8, 16]),
    "beta_tcvae": ("model.beta", [1, 2, 4, 6, 8, 10]),
    "factor_vae": ("model.objective.gamma", [10, 20, 30, 40, 50, 100]),
    "dip_vae_i": ("model.objective.lambda_od", [1, 2, 5, 10, 20, 50]),
    "dip_vae_ii": ("model.objective.lambda_od", [1, 2, 5, 10, 20, 50]),
}


def compose(tmp_path, *overrides: str):
    cfg = compose_config("train", list(overrides), tmp_path)
    return OmegaConf.to_container(cfg, resolve=True), cfg


def select(config: dict, key: str):
    return OmegaConf.select(OmegaConf.create(config), key)


@pytest.mark.parametrize("data", ["dsprites", "sprites"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipes_compose_the_papers_setup(tmp_path, data, name):
    config, _ = compose(tmp_path, f"experiment={data}_{name}")
    objective, values = RECIPES[name]
    assert config["model"]["objective"]["_target_"].endswith(f".{objective}")
    for key, value in values.items():
        assert select(config, key) == value, key
    model = config["model"]
    assert model["latent_dim"] == 10 and model["optimizer"]["lr"] == 1e-4
    assert model["encoder"]["channels"] == [32, 32, 64, 64]
    assert model["decoder"]["channels"] == [64, 64, 32, 32]
    assert {model["encoder"]["kernel_size"], model["encoder"]["stride"]} == {4, 2}
    assert model["likelihood"]["_target_"].endswith("BernoulliLikelihood")
    assert model["kl_schedule"]["_target_"].endswith("ConstantBeta")
    assert config["data"]["_target_"].endswith("SpritesDataModule" if data == "sprites"
                                               else "DSpritesDataModule")
    assert config["data"]["batch_size"] == 64 and config["data"]["image_shape"] == [1, 64, 64]
    assert config["task_name"] == f"{data}_{name}"
    assert config["trainer"]["max_steps"] == (300000 if data == "dsprites" else 60000)


@pytest.mark.parametrize("method", list(STRENGTHS))
def test_strength_index_picks_the_papers_strengths(tmp_path, method):
    key, strengths = STRENGTHS[method]
    for index, strength in enumerate(strengths):
        config, _ = compose(tmp_path, "experiment=sprites_beta_vae",
                            f"disentanglement_method={method}", f"strength_index={index}")
        assert select(config, key) == strength
        if method.startswith("dip_vae"):  # lambda_d = 10 lambda_od (I) or lambda_od (II)
            factor = 10 if method == "dip_vae_i" else 1
            assert config["model"]["objective"]["lambda_d"] == factor * strength


@pytest.mark.parametrize("data", ["dsprites", "sprites"])
def test_disentanglement_sweeps_cover_objectives_strengths_and_seeds(tmp_path, data):
    config, cfg = compose(tmp_path, f"experiment={data}_disentanglement_sweep")
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"disentanglement_method": list(STRENGTHS),
                      "strength_index": [str(i) for i in range(6)], "seed": ["0", "1", "2"]}
    assert math.prod(len(v) for v in params.values()) == 90
    single, _ = compose(tmp_path, f"experiment={data}_beta_vae")
    for part in ("model", "data", "trainer"):  # the jobs are the single recipe's runs
        assert config[part] == single[part], part


def tiny_sprites(tmp_path) -> list[str]:
    return ["data.image_size=16", "data.sprite_size=0.75", "data.scales=2",
            "data.orientations=2", "data.positions=4", "data.val_size=10", "data.test_size=10",
            f"data.cache_dir={tmp_path / 'cache'}", "data.eval_batch_size=10"]


@pytest.mark.parametrize("name", list(RECIPES))
def test_sprites_recipes_train_a_step(make_cfg, tmp_path, name):
    metrics = train(make_cfg([f"experiment=sprites_{name}", "debug=fdr", *tiny_sprites(tmp_path)]))
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/elbo"])
