"""Disentanglement metrics: hand-checked cases, independent float64 references, and the ranking
ideal > mixed > noise on representations whose disentanglement is known by construction."""

import math

import numpy as np
import pytest
import torch

from vaelab.metrics import disentanglement as dm

SIZES = (4, 4, 6)  # factors 0 and 1 have the same size, so a 45-degree rotation mixes them evenly
N = 600


def grid_factors(n: int, sizes=SIZES, seed: int = 0) -> np.ndarray:
    """Factor classes drawn uniformly over the grid; [n, K] int64."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, n) for size in sizes], axis=1)


def standardised(factors: np.ndarray) -> np.ndarray:
    return (factors - factors.mean(0)) / factors.std(0)


def rotate_first_two(codes: np.ndarray) -> np.ndarray:
    """Codes 0 and 1 replaced by their sum and difference over sqrt 2 (a 45-degree rotation)."""
    mixed = codes.copy()
    mixed[:, 0] = (codes[:, 0] + codes[:, 1]) / math.sqrt(2)
    mixed[:, 1] = (codes[:, 0] - codes[:, 1]) / math.sqrt(2)
    return mixed


def representations(factors: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    monotone = np.exp(factors / np.array(SIZES))  # one increasing function per factor
    return {
        "factors": factors.astype(np.float64),
        "monotone_plus_noise": np.concatenate([monotone, rng.normal(size=(len(factors), 2))], 1),
        "mixed": rotate_first_two(standardised(factors)),
        "noise": rng.normal(size=(len(factors), 5)),
    }


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, float]]:
    """Every representation-based metric of every representation, computed once."""
    factors = grid_factors(N)
    out = {}
    for name, codes in representations(factors).items():
        out[name] = {**dm.mig(codes, factors), **dm.dci(codes, factors), **dm.sap(codes, factors),
                     **dm.modularity_explicitness(codes, factors)}
    return out


# --------------------------------------------------------------------------------------------
# Hand-checked pieces


def test_histogram_discretize_uses_equal_width_bins_over_the_range():
    codes = np.array([[0.0, 3.0], [0.26, 3.0], [0.5, 3.0], [1.0, 3.0]])
    bins = dm.histogram_discretize(codes, num_bins=4)
    assert bins[:, 0].tolist() == [0, 1, 2, 3]  # the maximum falls in the last bin
    assert len(set(bins[:, 1].tolist())) == 1  # a constant dim is one bin


def test_mig_on_a_four_point_case_checked_by_hand():
    f = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    codes = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])  # c0 = f0; c1 = f0 OR f1
    # I(c1; f0) = I(c1; f1) from the joint table {(0,0): 1/4, (1,0): 1/4, (1,1): 1/2}
    m = 0.25 * math.log(2) + 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3)
    mutual_info = dm.mutual_info_matrix(dm.histogram_discretize(codes, 2), f)
    np.testing.assert_allclose(mutual_info, [[math.log(2), 0.0], [m, m]], atol=1e-12)
    # f0: (log 2 - m) / log 2; f1: (m - 0) / log 2; their mean is exactly 1/2
    assert dm.mig(codes, f, num_bins=2)["mig"] == pytest.approx(0.5, abs=1e-12)


def reference_mig(codes: np.ndarray, factors: np.ndarray, num_bins: int) -> float:
    """MIG from contingency tables in float64, written independently of the module."""
    lo, hi = codes.min(0), codes.max(0)
    bins = np.minimum(np.floor((codes - lo) / (hi - lo) * num_bins), num_bins - 1).astype(int)

    def mutual_info(a, b):
        joint = np.zeros((a.max() + 1, b.max() + 1))
        np.add.at(joint, (a, b), 1.0)
        joint /= joint.sum()
        outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
        nz = joint > 0
        return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))

    gaps = []
    for k in range(factors.shape[1]):
        mi = sorted(mutual_info(bins[:, d], factors[:, k]) for d in range(codes.shape[1]))
        gaps.append((mi[-1] - mi[-2]) / mutual_info(factors[:, k], factors[:, k]))
    return float(np.mean(gaps))


def test_mig_matches_an_independent_float64_computation():
    factors = grid_factors(300)
    codes = standardised(factors) + np.random.default_rng(2).normal(scale=0.7, size=(300, 3))
    assert dm.mig(codes, factors, num_bins=7)["mig"] == pytest.approx(
        reference_mig(codes, factors, 7), abs=1e-10)


def normalised_entropy(p: list[float]) -> float:
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    return float(-sum(x * math.log(x) for x in p if x > 0) / math.log(len(p)))


def test_dci_scores_from_a_hand_made_importance_matrix():
    importance = np.array([[0.6, 0.2], [0.0, 0.2]])  # [codes, factors]
    # code 0 splits 3:1 over the factors (weight 0.8), code 1 explains factor 1 only (weight 0.2)
    disentanglement = 0.8 * (1 - normalised_entropy([0.75, 0.25])) + 0.2 * 1.0
    # factor 0 uses code 0 only (weight 0.6), factor 1 uses both codes equally (weight 0.4)
    completeness = 0.6 * 1.0 + 0.4 * 0.0
    assert disentanglement == pytest.approx(0.350978, abs=1e-6)
    assert dm.disentanglement_from_importance(importance) == pytest.approx(disentanglement,
                                                                           abs=1e-8)
    assert dm.completeness_from_importance(importance) == pytest.approx(completeness, abs=1e-8)


@pytest.mark.parametrize(("importance", "expected"), [
    (np.eye(3), 1.0),
    (np.full((3, 3), 1 / 3), 0.0),
    (np.zeros((3, 3)), 0.0),  # no code is important: uniform, as disentanglement_lib
])
def test_dci_scores_at_the_extremes(importance, expected):
    assert dm.disentanglement_from_importance(importance) == pytest.approx(expected, abs=1e-8)
    assert dm.completeness_from_importance(importance) == pytest.approx(expected, abs=1e-8)


def test_modularity_from_a_hand_made_mutual_information_matrix():
    # one factor only / two factors equally / no factor (scores 0 by definition)
    assert dm.modularity_from_mutual_info(np.array([[1.0, 0], [1, 1], [0, 0]])) == pytest.approx(
        1 / 3)
    # squared MI (4, 1, 0): 1 - 1 / (4 * (3 - 1))
    assert dm.modularity_from_mutual_info(np.array([[2.0, 1, 0]])) == pytest.approx(0.875)


# --------------------------------------------------------------------------------------------
# Known representations: ideal near the maximum, mixing lower, noise near 0 or chance


def test_ideal_representations_score_near_the_maximum(scores):
    for name in ("factors", "monotone_plus_noise"):
        s = scores[name]
        assert s["mig"] > 0.85, name
        assert s["dci_disentanglement"] > 0.9 and s["dci_completeness"] > 0.9, name
        assert s["dci_informativeness"] > 0.95, name
        assert s["explicitness_test"] > 0.85, name
    # noise dims are perfectly modular by this definition's normalisation, so only the
    # factors themselves reach the maximum
    assert scores["factors"]["modularity"] > 0.97


def test_mixing_two_factors_scores_clearly_lower(scores):
    ideal, mixed = scores["factors"], scores["mixed"]
    # two of three factors are shared evenly by two codes: MIG of those two is 0
    assert mixed["mig"] == pytest.approx(1 / 3, abs=0.08)
    for key in ("dci_disentanglement", "dci_completeness", "modularity"):
        assert mixed[key] < ideal[key] - 0.2, key
    assert mixed["sap"] < ideal["sap"] - 0.1
    # the information is still there, only spread over codes
    assert mixed["dci_informativeness"] > 0.95 and mixed["explicitness_test"] > 0.85


def test_noise_scores_near_zero_or_chance(scores):
    noise = scores["noise"]
    for key in ("mig", "dci_disentanglement", "dci_completeness", "sap"):
        assert noise[key] < 0.05, key
    chance = np.mean([1 / size for size in SIZES])
    assert noise["dci_informativeness"] < chance + 0.1
    assert noise["explicitness_test"] == pytest.approx(0.5, abs=0.07)


def test_sap_of_the_factors_exceeds_every_other_representation(scores):
    # SAP's maximum is below 1 for multi-class factors (a one-dim linear SVM cannot pick out
    # middle classes), so compare instead of thresholding
    assert scores["factors"]["sap"] > max(s["sap"] for n, s in scores.items() if n != "factors")


# --------------------------------------------------------------------------------------------
# Inputs, single-valued factors, determinism


def test_single_valued_factors_are_dropped():
    factors = grid_factors(200)
    with_constant = np.concatenate([factors, np.full((200, 1), 3)], axis=1)
    codes = representations(factors)["mixed"]
    for metric in (dm.mig, dm.sap, dm.modularity_explicitness):
        assert metric(codes, with_constant) == metric(codes, factors), metric.__name__


def test_torch_tensors_give_the_numpy_result():
    factors = grid_factors(200)
    codes = representations(factors)["monotone_plus_noise"]
    assert dm.mig(torch.from_numpy(codes).float(), torch.from_numpy(factors)) == pytest.approx(
        dm.mig(codes.astype(np.float32), factors))


@pytest.mark.parametrize("metric", [dm.dci, dm.sap, dm.modularity_explicitness])
def test_split_metrics_are_deterministic_for_a_seed(metric):
    factors = grid_factors(200)
    codes = representations(factors)["monotone_plus_noise"]
    assert metric(codes, factors, seed=3) == metric(codes, factors, seed=3)


def test_dci_in_parallel_gives_the_sequential_result():
    factors = grid_factors(150)
    codes = representations(factors)["monotone_plus_noise"]
    assert dm.dci(codes, factors, n_jobs=2) == dm.dci(codes, factors, n_jobs=1)


def test_split_sizes_that_do_not_fit_raise():
    factors = grid_factors(300)
    codes = representations(factors)["noise"]
    with pytest.raises(ValueError, match="cannot split 300 points into 250 train and 100 test"):
        dm.dci(codes, factors, num_train=250, num_test=100)
    with pytest.raises(ValueError, match="into 300 train and 0 test"):
        dm.sap(codes, factors, train_fraction=0.999)


@pytest.mark.parametrize(("codes", "factors", "match"), [
    (np.zeros((5, 2)), np.zeros((4, 1), dtype=int), "different N"),
    (np.zeros((4, 2)), np.array([[0.0], [1.0], [0.0], [1.0]]), "integer class ids"),
    (np.zeros((1, 2)), np.zeros((1, 1), dtype=int), "too few points"),
    (np.zeros((4, 2)), np.full((4, 2), 2), "single value"),
    (np.full((4, 2), np.nan), np.array([[0], [1], [0], [1]]), "NaN"),
])
def test_bad_inputs_raise_errors_naming_the_problem(codes, factors, match):
    with pytest.raises(ValueError, match=match):
        dm.mig(codes, factors)


@pytest.mark.parametrize("metric", [dm.dci, dm.sap, dm.modularity_explicitness])
def test_too_few_training_points_for_a_classifier_raises(metric):
    codes = np.arange(4.0)[:, None]
    factors = np.array([[0], [1], [0], [1]])
    with pytest.raises(ValueError, match="too few points: factor 0 takes one value"):
        metric(codes, factors, num_train=1, num_test=3)


# --------------------------------------------------------------------------------------------
# Sampling-based scores


class PixelSampler:
    """Images [n, 1, 1, K] whose pixel k is 50 times factor k; factor 0 never varies."""

    factor_sizes = [1, 4, 4, 5]

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.stack([torch.randint(size, (n,), generator=generator)
                            for size in self.factor_sizes], dim=1)

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        return (factors * 50).to(torch.uint8).view(len(factors), 1, 1, -1)


def linear_represent(weights: np.ndarray):
    """represent(images) = pixel values @ weights [K, D]."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    return lambda images: images.flatten(1).float() @ weights


IDEAL = np.eye(4)[:, 1:] / 50  # codes = factors 1, 2, 3
# factors 1 and 2 (same size, so same spread) rotated by 45 degrees into codes 0 and 1
MIXED = IDEAL @ np.array([[1, 1, 0], [1, -1, 0], [0, 0, math.sqrt(2)]]) / math.sqrt(2)
COUNTS = {"batch_size": 16, "num_train": 300, "num_eval": 200}


def noise_represent(images: torch.Tensor) -> torch.Tensor:
    """Codes that ignore the images."""
    return torch.randn(len(images), 3, generator=noise_represent.generator)


def factor_vae(represent, **kwargs):
    return dm.factor_vae_score(PixelSampler(), represent, num_variance_estimate=500,
                               **{**COUNTS, **kwargs})


def beta_vae(represent, **kwargs):
    return dm.beta_vae_score(PixelSampler(), represent, **{**COUNTS, **kwargs})


def test_sampling_scores_of_the_ideal_representation_are_perfect():
    assert beta_vae(linear_represent(IDEAL)) == {"beta_vae_score": 1.0,
                                                 "beta_vae_score_train": 1.0}
    assert factor_vae(linear_represent(IDEAL)) == {"factor_vae_score": 1.0,
                                                   "factor_vae_score_train": 1.0,
                                                   "num_active_dims": 3.0}


def test_sampling_scores_drop_when_two_factors_are_mixed():
    # the batches fixing factor 1 or factor 2 look alike: about 1/3 + 2/3 * 1/2 correct
    assert beta_vae(linear_represent(MIXED))["beta_vae_score"] == pytest.approx(2 / 3, abs=0.1)
    assert factor_vae(linear_represent(MIXED))["factor_vae_score"] == pytest.approx(2 / 3,
                                                                                   abs=0.1)


def test_sampling_scores_of_noise_are_near_chance():
    noise_represent.generator = torch.Generator().manual_seed(0)
    assert beta_vae(noise_represent)["beta_vae_score"] == pytest.approx(1 / 3, abs=0.1)
    assert factor_vae(noise_represent)["factor_vae_score"] == pytest.approx(1 / 3, abs=0.1)


def test_collapsed_dims_are_pruned():
    collapsed = np.concatenate([IDEAL, np.zeros((4, 1))], axis=1)  # a fourth, constant code
    assert factor_vae(linear_represent(collapsed))["num_active_dims"] == 3.0
    assert factor_vae(linear_represent(collapsed))["factor_vae_score"] == 1.0
    assert factor_vae(linear_represent(np.zeros((4, 2)))) == {
        "factor_vae_score": 0.0, "factor_vae_score_train": 0.0, "num_active_dims": 0.0}


def test_size_one_factors_are_never_fixed():
    sampler = PixelSampler()
    sampler.factor_sizes = [1, 4, 1, 5]
    chosen = dm._fixed_factors(sampler, 2000, torch.Generator().manual_seed(0))
    assert set(chosen.tolist()) == {1, 3}


def test_sampling_scores_are_deterministic_and_independent_of_the_call_size():
    represent = linear_represent(MIXED)
    for score in (beta_vae, factor_vae):
        first = score(represent, seed=7)
        assert score(represent, seed=7) == first
        assert score(represent, seed=7, images_per_call=10) == first


def test_sampling_scores_check_the_callers_functions():
    with pytest.raises(ValueError, match=r"must return codes \[\d+, D\]"):
        beta_vae(lambda images: torch.zeros(3))
    with pytest.raises(ValueError, match="fewer than two different factors"):
        sampler = PixelSampler()
        sampler.factor_sizes = [1, 1, 1, 5]
        dm.beta_vae_score(sampler, linear_represent(IDEAL), **COUNTS)
    with pytest.raises(ValueError, match="every factor of the sampler has size 1"):
        sampler.factor_sizes = [1, 1, 1, 1]
        dm.factor_vae_score(sampler, linear_represent(IDEAL), **COUNTS)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        factor_vae(linear_represent(IDEAL), batch_size=1)
