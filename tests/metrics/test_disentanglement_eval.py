"""vaelab-eval's disentanglement metrics: written for data with factors, the same numbers as the
metric functions called directly, nothing on data without factors, the same on 2 DDP ranks."""

import json
import math
import subprocess
import sys

import pytest
import torch

from vaelab.checkpoints import load_run, setup_run_data
from vaelab.eval import evaluate
from vaelab.metric_specs import SPECS
from vaelab.metrics import disentanglement as dm
from vaelab.metrics.disentanglement_eval import (
    EncodedFactorGrid,
    FactorCodes,
    disentanglement_enabled,
    disentanglement_scores,
    split_counts,
)
from vaelab.models.latents import posterior_means
from vaelab.train import train

#: the metrics of data with ground-truth factors (metric_specs)
DISENTANGLEMENT_DESCRIPTIONS = {f"test/{s.name}": s.description for s in SPECS if s.factors}

EVAL_BATCH = 20  # 60 test images in 3 batches (of 10 a rank under DDP): 50 points span them
MODEL = ["model.latent_dim=4", "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]",
         "trainer.max_epochs=2", "logger=none"]
# Counts small enough for a second; the same values as keyword arguments for the functions.
POINTS, TRAIN, TEST = 50, 30, 20
SCORE_COUNTS = {"batch_size": 4, "num_train": 60, "num_eval": 20}
VARIANCE_POINTS = 60
SMALL = [f"disentanglement.num_points={POINTS}", f"disentanglement.num_train={TRAIN}",
         f"disentanglement.num_test={TEST}",
         f"disentanglement.factor_vae.num_variance_estimate={VARIANCE_POINTS}",
         *(f"disentanglement.{score}.{k}={v}" for score in ("beta_vae", "factor_vae")
           for k, v in SCORE_COUNTS.items())]
EVAL = ["logger=none", "fid.enabled=false", "iwae.num_samples=2", *SMALL]
SCORES = [k for k in DISENTANGLEMENT_DESCRIPTIONS if "num_" not in k and "active" not in k]


def sprites(tmp_path) -> list[str]:
    """A grid of 3 shapes x 3 scales x 2 orientations x 4 x 4 positions of 16x16 sprites."""
    return ["data=sprites", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=16",
            "data.sprite_size=0.75", "data.scales=3", "data.orientations=2", "data.positions=4",
            "data.val_size=20", "data.test_size=60", "data.batch_size=32",
            f"data.eval_batch_size={EVAL_BATCH}"]


@pytest.fixture
def sprites_checkpoint(make_cfg, tmp_path):
    metrics = train(make_cfg([*sprites(tmp_path), *MODEL], output_dir=tmp_path / "run"))
    return metrics["best_checkpoint"]


def test_eval_writes_every_disentanglement_metric_in_range(make_cfg, sprites_checkpoint,
                                                           tmp_path):
    metrics = evaluate(make_cfg([f"ckpt_path={sprites_checkpoint}", *EVAL], name="eval",
                                output_dir=tmp_path / "eval"))
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(DISENTANGLEMENT_DESCRIPTIONS) <= set(written)
    for key in SCORES:  # accuracies, MI ratios, importance entropies and AUCs
        assert math.isfinite(written[key]) and 0 <= written[key] <= 1, key
        assert written[key] == metrics[key]
    assert 0 <= written["test/factor_vae_active_dims"] <= 4
    assert (written["test/disentanglement_num_points"], written["test/disentanglement_num_train"],
            written["test/disentanglement_num_test"]) == (POINTS, TRAIN, TEST)


def test_eval_gives_the_numbers_of_the_metric_functions_on_the_same_codes(
        make_cfg, sprites_checkpoint, tmp_path):
    """The eval path (codes gathered in the test loop, each grid image encoded once for the
    sampling scores) changes no number: the functions on the first test images' posterior
    means, and the sampling scores with the DataModule itself as the sampler, agree."""
    metrics = evaluate(make_cfg([f"ckpt_path={sprites_checkpoint}", *EVAL], name="eval",
                                output_dir=tmp_path / "eval"))
    _, model, data = load_run(sprites_checkpoint)
    setup_run_data(data, "test")

    def represent(images):
        return posterior_means(model, images, EVAL_BATCH, data.model_input)

    codes, factors = represent(data.images("test")[:POINTS]), data.labels("test")[:POINTS]
    split = {"num_train": TRAIN, "num_test": TEST, "seed": 0}
    expected = {**dm.mig(codes[:TRAIN], factors[:TRAIN], num_bins=20),
                **dm.dci(codes, factors, **split), **dm.sap(codes, factors, **split),
                **dm.modularity_explicitness(codes, factors, num_bins=20, **split),
                **dm.beta_vae_score(data, represent, seed=0, **SCORE_COUNTS),
                **dm.factor_vae_score(data, represent, seed=0, **SCORE_COUNTS,
                                      num_variance_estimate=VARIANCE_POINTS)}
    expected["explicitness"] = expected.pop("explicitness_test")
    expected["factor_vae_active_dims"] = expected.pop("num_active_dims")
    assert len(expected) == len(SCORES) + 1
    for name, value in expected.items():
        assert metrics[f"test/{name}"] == pytest.approx(value, abs=1e-9), name


def test_data_without_factors_has_no_disentanglement_metrics(make_cfg, tmp_path):
    checkpoint = train(make_cfg(MODEL, output_dir=tmp_path / "run"))["best_checkpoint"]
    metrics = evaluate(make_cfg([f"ckpt_path={checkpoint}", *EVAL], name="eval",
                                output_dir=tmp_path / "eval"))
    assert "test/elbo" in metrics
    assert not set(DISENTANGLEMENT_DESCRIPTIONS) & set(metrics)

    cfg = make_cfg([f"ckpt_path={checkpoint}", *EVAL, "disentanglement.enabled=true"],
                   name="eval", output_dir=tmp_path / "eval_required")
    with pytest.raises(ValueError, match="disentanglement.enabled=true needs data with "
                                         "ground-truth factors.*data=sprites"):
        evaluate(cfg)
    assert not (tmp_path / "eval_required" / "metrics.json").exists()


def test_enabled_is_auto_true_or_false():
    assert disentanglement_enabled("auto", has_factors=True)
    assert not disentanglement_enabled("auto", has_factors=False)
    assert not disentanglement_enabled(False, has_factors=True)
    with pytest.raises(ValueError, match="use auto, true or false"):
        disentanglement_enabled("yes", has_factors=True)


def test_factor_codes_keep_the_first_points_in_index_order():
    codes = FactorCodes(num_points=4)
    # two batches, as two ranks' interleaved shards would arrive: indices 1, 3, 5 and 0, 2, 4
    for index in (torch.tensor([1, 3, 5]), torch.tensor([0, 2, 4])):
        codes.update(index[:, None].float().repeat(1, 2), index[:, None].repeat(1, 3), index)
    mu, factors = codes.compute()
    assert mu[:, 0].tolist() == [0, 1, 2, 3] and factors[:, 2].tolist() == [0, 1, 2, 3]
    assert mu.shape == (4, 2) and factors.dtype == torch.long


class TinyGrid:
    """A 2 x 3 x 2 factor grid whose image of classes f is f itself as one row of pixels."""

    factor_sizes = [2, 3, 2]

    def sample_factors(self, n, generator=None):
        return torch.stack([torch.randint(s, (n,), generator=generator)
                            for s in self.factor_sizes], dim=1)

    def images_from_factors(self, factors):
        return factors.to(torch.uint8).view(-1, 1, 1, 3)

    def grid_index(self, factors):  # mixed radix, the last factor fastest
        return factors[:, 0] * 6 + factors[:, 1] * 2 + factors[:, 2]

    def grid_factors(self, index):
        return torch.stack([index // 6, index // 2 % 3, index % 2], dim=1)


def test_encoded_factor_grid_encodes_each_image_once_with_the_codes_of_its_image():
    data, calls = TinyGrid(), []

    def encode(images):
        calls.append(len(images))
        return images.float().flatten(1) @ torch.tensor([[1.0, 0.0], [0.0, 10.0], [0.5, 0.5]])

    grid = EncodedFactorGrid(data, encode)
    factors = data.sample_factors(500, torch.Generator().manual_seed(0))
    codes = torch.cat([grid.represent(chunk) for chunk in factors.split(64)])
    distinct = len(torch.unique(factors, dim=0))
    assert grid.num_encoded == distinct == 12 and sum(calls) == distinct
    torch.testing.assert_close(codes, encode(data.images_from_factors(factors)))
    assert torch.equal(grid.images_from_factors(factors), factors)  # stand-ins for the images


class SubsampledGrid(TinyGrid):
    """TinyGrid without the images of first factor class 1, as a subsampled file lacks them."""

    is_complete_grid = False
    factor_names = ["a", "b", "c"]

    def images_from_factors(self, factors):
        if (factors[:, 0] == 1).any():
            raise KeyError("no image has the factors a=1: this data is a subsample")
        return super().images_from_factors(factors)


def test_a_subsampled_grid_keeps_every_metric_but_the_sampling_scores(caplog):
    """Issue 21: the beta-VAE and FactorVAE scores asked for combinations a subsampled file
    lacks, and the KeyError at the end of an evaluation lost every metric."""
    from vaelab.metrics.disentanglement_eval import sampling_scores

    data = SubsampledGrid()
    with caplog.at_level("WARNING"):
        assert not sampling_scores(data)
    assert "beta-VAE and FactorVAE scores, which draw images of any combination, are left " \
           "out" in caplog.text
    factors = torch.cat([torch.zeros(60, 1, dtype=torch.long),
                         torch.randint(3, (60, 1)), torch.randint(2, (60, 1))], dim=1)
    codes = factors.float() + 0.1 * torch.randn(60, 3)
    settings = {"num_train": 40, "num_test": 20, "seed": 0, "num_bins": 5, "n_jobs": 1,
                "beta_vae": SCORE_COUNTS, "factor_vae": SCORE_COUNTS}
    grid = EncodedFactorGrid(data, lambda images: images.float().flatten(1))
    results = disentanglement_scores(codes, factors, grid, settings)
    assert {"mig", "dci_disentanglement", "sap", "modularity"} <= set(results)
    assert not {"beta_vae_score", "factor_vae_score", "factor_vae_active_dims"} & set(results)


@pytest.mark.parametrize("available, expected", [(15000, (10000, 5000)), (20000, (10000, 5000)),
                                                 (3000, (2000, 1000)), (50, (33, 17))])
def test_split_counts_keep_the_ratio_when_points_are_short(available, expected):
    assert split_counts(available, 10000, 5000) == expected


@pytest.mark.slow
@pytest.mark.integration
def test_two_ddp_ranks_give_the_numbers_of_one_process(make_cfg, sprites_checkpoint, tmp_path):
    single = evaluate(make_cfg([f"ckpt_path={sprites_checkpoint}", *EVAL], name="eval",
                               output_dir=tmp_path / "single"))
    done = subprocess.run([sys.executable, "-m", "vaelab", "eval",
                           f"ckpt_path={sprites_checkpoint}",
                           "trainer=ddp_sim", "callbacks.progress=null",
                           "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'ddp'}",
                           *EVAL], cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    for key in DISENTANGLEMENT_DESCRIPTIONS:
        assert ddp[key] == single[key], key
