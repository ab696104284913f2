"""Disentanglement metrics of Locatello et al. (2019): MIG, DCI, SAP, modularity/explicitness,
and the beta-VAE and FactorVAE scores, with google-research/disentanglement_lib's definitions
and defaults (its `unsupervised_study_v1` metric configs).

Representation-based metrics take codes `[N, D]` (posterior means) and factor classes `[N, K]`
(torch tensors or numpy arrays). Sampling-based metrics draw images through a `FactorSampler`
and encode them with `represent`. Every metric returns a `dict[str, float]` and is deterministic
for its `seed`.
"""

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

Array = torch.Tensor | np.ndarray
Represent = Callable[[torch.Tensor], torch.Tensor]

# disentanglement_lib adds this to importances before taking entropies (an all-zero row or
# column then counts as uniform, not as undefined).
_IMPORTANCE_EPS = 1e-11


class FactorSampler(Protocol):
    """Ground-truth data whose images can be drawn with chosen factor values."""

    factor_sizes: list[int]
    """Number of classes of each of the K factors; size-1 factors are never fixed or scored."""

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Factor classes drawn uniformly over the factor grid; LongTensor [n, K]."""
        ...

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """Images of factor classes [n, K]; uint8 [n, C, H, W]."""
        ...


# ---------------------------------------------------------------------------------------------
# Input checks


def _codes_and_factors(codes: Array, factors: Array, metric: str,
                       min_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 codes [N, D] and int64 factors [N, K'], single-valued factors dropped."""
    codes = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes)
    factors = np.asarray(factors.detach().cpu() if isinstance(factors, torch.Tensor) else factors)
    shapes = f"codes {codes.shape}, factors {factors.shape}"
    if codes.ndim != 2 or factors.ndim != 2:
        raise ValueError(f"{metric}: need codes [N, D] and factors [N, K], got {shapes}")
    if len(codes) != len(factors):
        raise ValueError(f"{metric}: codes and factors have different N ({shapes}); pass one "
                         "row of factor classes per code row")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"{metric}: factors must be integer class ids, got dtype "
                         f"{factors.dtype}; convert them with .long() / .astype(int)")
    if len(codes) < min_points:
        raise ValueError(f"{metric}: too few points ({len(codes)}); it needs at least "
                         f"{min_points}, pass more codes")
    if not np.isfinite(codes).all():
        raise ValueError(f"{metric}: codes contain NaN or inf; check the model's posterior means")
    informative = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    if not informative:
        raise ValueError(f"{metric}: every factor takes a single value over the {len(codes)} "
                         "points, so there is nothing to measure; pass points that vary")
    return codes.astype(np.float64), factors[:, informative].astype(np.int64)


def _split(n: int, num_train: int | None, num_test: int | None, train_fraction: float,
           seed: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random train and test row indices of n points."""
    num_train = round(train_fraction * n) if num_train is None else num_train
    num_test = n - num_train if num_test is None else num_test
    if num_train < 1 or num_test < 1 or num_train + num_test > n:
        raise ValueError(f"{metric}: cannot split {n} points into {num_train} train and "
                         f"{num_test} test points; pass more points or change "
                         "num_train / num_test / train_fraction")
    order = np.random.default_rng(seed).permutation(n)
    return order[:num_train], order[num_train:num_train + num_test]


def _check_train_classes(y_train: np.ndarray, metric: str) -> None:
    """Classifiers need at least two classes of every factor among the training points."""
    for k in range(y_train.shape[1]):
        if len(np.unique(y_train[:, k])) < 2:
            raise ValueError(f"{metric}: too few points: factor {k} takes one value among the "
                             f"{len(y_train)} training points; pass more points or a larger "
                             "num_train / train_fraction")


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both scaled by the train mean and std (constant dims keep std 1)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


# ---------------------------------------------------------------------------------------------
# Mutual-information metrics: MIG and modularity


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each code dim into num_bins equal-width bins over its range; [N, D] -> bin ids [N, D]."""
    bins = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], num_bins)
        bins[:, d] = np.digitize(codes[:, d], edges[1:-1])  # the maximum lands in the last bin
    return bins


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Discrete mutual information I(code_d; factor_k) in nats; [N, D], [N, K] -> [D, K]."""
    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, d])
                      for k in range(factors.shape[1])] for d in range(discrete_codes.shape[1])])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """Entropy H(factor_k) in nats of the empirical factor distribution; [N, K] -> [K]."""
    return np.array([mutual_info_score(column, column) for column in factors.T])


def _top_two_gap(matrix: np.ndarray) -> np.ndarray:
    """Per column, largest minus second-largest entry; [D, K] -> [K] (0 when D = 1)."""
    if matrix.shape[0] < 2:
        return np.zeros(matrix.shape[1])
    top = np.sort(matrix, axis=0)
    return top[-1] - top[-2]


def mig_from_mutual_info(mutual_info: np.ndarray, entropies: np.ndarray) -> float:
    """Mean over factors of (top minus second MI with any code) / H(factor); [D, K], [K]."""
    return float(np.mean(_top_two_gap(mutual_info) / entropies))


def mig(codes: Array, factors: Array, num_bins: int = 20) -> dict[str, float]:
    """Mutual Information Gap (Chen et al. 2018) of codes [N, D] and factor classes [N, K].

    Codes are histogram-discretised into num_bins bins; MIG is in [0, 1]. Factors that take a
    single value carry no information and are dropped.
    """
    codes, factors = _codes_and_factors(codes, factors, "mig")
    mutual_info = mutual_info_matrix(histogram_discretize(codes, num_bins), factors)
    return {"mig": mig_from_mutual_info(mutual_info, factor_entropies(factors))}


def modularity_from_mutual_info(mutual_info: np.ndarray) -> float:
    """Mean over codes of 1 - (sum of squared MI but the largest) / (largest * (K - 1)); [D, K].

    A code informative about no factor scores 0 (Ridgeway & Zemel 2018).
    """
    squared = mutual_info ** 2
    largest = squared.max(axis=1)
    others = squared.sum(axis=1) - largest
    denominator = largest * max(squared.shape[1] - 1, 1)
    deviation = np.divide(others, denominator, out=np.zeros_like(others),
                          where=denominator > 0)
    return float(np.mean(np.where(largest > 0, 1.0 - deviation, 0.0)))


# ---------------------------------------------------------------------------------------------
# DCI (Eastwood & Williams 2018)


def _fit_gbt(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             seed: int) -> tuple[np.ndarray, float, float]:
    """One factor's trees: code importances [D], train accuracy, test accuracy."""
    model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(x_train) == y_train)),
            float(np.mean(model.predict(x_test) == y_test)))


def gbt_importance(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, seed: int = 0,
                   n_jobs: int = 1) -> tuple[np.ndarray, float, float]:
    """Gradient-boosted trees per factor (sklearn defaults, as disentanglement_lib), n_jobs
    factors at a time.

    Codes [N, D], factors [N, K] -> importance [D, K], mean train accuracy, mean test accuracy.
    """
    fits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_gbt)(x_train, y_train[:, k], x_test, y_test[:, k], seed)
        for k in range(y_train.shape[1]))
    importance, train_acc, test_acc = zip(*fits)
    return np.stack(importance, axis=1), float(np.mean(train_acc)), float(np.mean(test_acc))


def _normalised_entropy(weights: np.ndarray) -> np.ndarray:
    """Entropy of each row of weights [R, C], normalised to a distribution, in base C; -> [R]."""
    if weights.shape[1] == 1:
        return np.zeros(weights.shape[0])
    p = weights + _IMPORTANCE_EPS
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(weights.shape[1])


def _importance_weights(totals: np.ndarray) -> np.ndarray:
    """Totals normalised to sum 1 (uniform when all are zero, as disentanglement_lib)."""
    return totals / totals.sum() if totals.sum() > 0 else np.full(len(totals), 1 / len(totals))


def disentanglement_from_importance(importance: np.ndarray) -> float:
    """Sum over codes of (1 - entropy over factors, base K), weighted by code importance; [D, K]."""
    per_code = 1.0 - _normalised_entropy(importance)
    return float(np.sum(per_code * _importance_weights(importance.sum(axis=1))))


def completeness_from_importance(importance: np.ndarray) -> float:
    """Sum over factors of (1 - entropy over codes, base D), weighted by factor importance.

    Importance [D, K]. Each factor's importances from gradient-boosted trees sum to 1, so this
    is the plain average over factors (disentanglement_lib weights it this way).
    """
    per_factor = 1.0 - _normalised_entropy(importance.T)
    return float(np.sum(per_factor * _importance_weights(importance.sum(axis=0))))


def dci(codes: Array, factors: Array, num_train: int | None = None, num_test: int | None = None,
        train_fraction: float = 2 / 3, seed: int = 0, n_jobs: int = 1) -> dict[str, float]:
    """Disentanglement, completeness, informativeness of codes [N, D] for factor classes [N, K].

    The N points are split at random into num_train and num_test points (default: a
    train_fraction share to train, the rest to test; disentanglement_lib draws 10000 and 5000).
    Scores are in [0, 1]; informativeness is the mean accuracy of the trees. Factors that take a
    single value carry no information and are dropped. n_jobs factors are fitted in parallel
    (the slowest step; the result does not depend on it).
    """
    codes, factors = _codes_and_factors(codes, factors, "dci")
    train, test = _split(len(codes), num_train, num_test, train_fraction, seed, "dci")
    _check_train_classes(factors[train], "dci")
    importance, train_acc, test_acc = gbt_importance(codes[train], factors[train], codes[test],
                                                     factors[test], seed, n_jobs)
    return {"dci_disentanglement": disentanglement_from_importance(importance),
            "dci_completeness": completeness_from_importance(importance),
            "dci_informativeness": test_acc,
            "dci_informativeness_train": train_acc}


# ---------------------------------------------------------------------------------------------
# SAP (Kumar et al. 2018)


def sap_score_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray, svm_c: float = 0.01, seed: int = 0) -> np.ndarray:
    """Test accuracy of a linear SVM predicting factor k from code dim d alone; -> [D, K]."""
    scores = np.zeros((x_train.shape[1], y_train.shape[1]))
    for d in range(x_train.shape[1]):
        for k in range(y_train.shape[1]):
            svm = LinearSVC(C=svm_c, class_weight="balanced", random_state=seed)
            svm.fit(x_train[:, [d]], y_train[:, k])
            scores[d, k] = np.mean(svm.predict(x_test[:, [d]]) == y_test[:, k])
    return scores


def sap(codes: Array, factors: Array, num_train: int | None = None, num_test: int | None = None,
        train_fraction: float = 2 / 3, svm_c: float = 0.01, seed: int = 0) -> dict[str, float]:
    """Separated Attribute Predictability of codes [N, D] for discrete factor classes [N, K].

    Mean over factors of the gap between the two code dims that predict it best (accuracy of a
    one-dim linear SVM); in [0, 1]. Split as in `dci`. Single-valued factors are dropped.
    """
    codes, factors = _codes_and_factors(codes, factors, "sap")
    train, test = _split(len(codes), num_train, num_test, train_fraction, seed, "sap")
    _check_train_classes(factors[train], "sap")
    scores = sap_score_matrix(codes[train], factors[train], codes[test], factors[test],
                              svm_c, seed)
    return {"sap": float(np.mean(_top_two_gap(scores)))}


# ---------------------------------------------------------------------------------------------
# Modularity and explicitness (Ridgeway & Zemel 2018)


def _logistic_regression(seed: int) -> OneVsRestClassifier:
    """One-vs-rest liblinear logistic regression: sklearn's LogisticRegression() default when
    disentanglement_lib's results were made (scikit-learn < 0.22)."""
    return OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))


def _mean_one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray,
                          classes: np.ndarray) -> float:
    """Mean ROC-AUC of probabilities [N, C] for each class that is present and not alone."""
    aucs = [roc_auc_score(labels == c, probabilities[:, i]) for i, c in enumerate(classes)
            if 0 < np.sum(labels == c) < len(labels)]
    return float(np.mean(aucs)) if aucs else float("nan")


def explicitness(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Mean over factors of the one-vs-rest AUC of a logistic regression on all codes.

    Standardised codes [N, D], factors [N, K] -> (train AUC, test AUC).
    """
    train_auc, test_auc = [], []
    for k in range(y_train.shape[1]):
        model = _logistic_regression(seed).fit(x_train, y_train[:, k])
        train_auc.append(_mean_one_vs_rest_auc(y_train[:, k], model.predict_proba(x_train),
                                               model.classes_))
        test_auc.append(_mean_one_vs_rest_auc(y_test[:, k], model.predict_proba(x_test),
                                              model.classes_))
    return float(np.nanmean(train_auc)), float(np.nanmean(test_auc))


def modularity_explicitness(codes: Array, factors: Array, num_bins: int = 20,
                            num_train: int | None = None, num_test: int | None = None,
                            train_fraction: float = 2 / 3, seed: int = 0) -> dict[str, float]:
    """Modularity (from the MI of train codes, histogram-discretised) and explicitness.

    Codes [N, D], factor classes [N, K], split as in `dci`. Modularity in [0, 1]; explicitness
    is a ROC-AUC in [0.5 (chance), 1]. Single-valued factors are dropped.
    """
    name = "modularity_explicitness"
    codes, factors = _codes_and_factors(codes, factors, name)
    train, test = _split(len(codes), num_train, num_test, train_fraction, seed, name)
    _check_train_classes(factors[train], name)
    mutual_info = mutual_info_matrix(histogram_discretize(codes[train], num_bins), factors[train])
    x_train, x_test = _standardise(codes[train], codes[test])
    train_auc, test_auc = explicitness(x_train, factors[train], x_test, factors[test], seed)
    return {"modularity": modularity_from_mutual_info(mutual_info),
            "explicitness_train": train_auc, "explicitness_test": test_auc}


# ---------------------------------------------------------------------------------------------
# Sampling-based scores: beta-VAE (Higgins et al. 2017) and FactorVAE (Kim & Mnih 2018)


def _varying_factors(sampler: FactorSampler) -> list[int]:
    """Indices of the factors with more than one class."""
    varying = [k for k, size in enumerate(sampler.factor_sizes) if size > 1]
    if not varying:
        raise ValueError(f"every factor of the sampler has size 1 (factor_sizes="
                         f"{sampler.factor_sizes}); the data has nothing to disentangle")
    return varying


def _fixed_factors(sampler: FactorSampler, n: int, generator: torch.Generator) -> torch.Tensor:
    """n factor indices drawn uniformly among the factors with more than one class; [n]."""
    varying = torch.tensor(_varying_factors(sampler))
    return varying[torch.randint(len(varying), (n,), generator=generator)]


def _check_counts(metric: str, num_train: int, num_eval: int, batch_size: int,
                  min_batch_size: int) -> None:
    if num_train < 1 or num_eval < 1 or batch_size < min_batch_size:
        raise ValueError(f"{metric}: needs num_train >= 1, num_eval >= 1 and batch_size >= "
                         f"{min_batch_size}, got {num_train}, {num_eval}, {batch_size}")


def _sample_factors(sampler: FactorSampler, n: int, generator: torch.Generator) -> torch.Tensor:
    """sampler.sample_factors with its shape checked; LongTensor [n, K]."""
    factors = sampler.sample_factors(n, generator)
    if tuple(factors.shape) != (n, len(sampler.factor_sizes)):
        raise ValueError(f"sampler.sample_factors({n}) returned shape {tuple(factors.shape)}, "
                         f"expected ({n}, {len(sampler.factor_sizes)}) (one column per entry "
                         "of factor_sizes)")
    return factors.long()


@torch.no_grad()
def _reduce_codes(sampler: FactorSampler, represent: Represent, factors: torch.Tensor,
                  reduce: Callable[[torch.Tensor], torch.Tensor],
                  images_per_call: int) -> torch.Tensor:
    """reduce(codes [p, M, D] float64) of the images of factors [P, M, K], p points per call.

    Results do not depend on images_per_call; it only bounds memory.
    """
    _, per_point, num_factors = factors.shape
    outputs = []
    for chunk in factors.split(max(1, images_per_call // per_point)):
        images = sampler.images_from_factors(chunk.reshape(-1, num_factors))
        codes = represent(images)
        if codes.ndim != 2 or len(codes) != len(images):
            raise ValueError(f"represent(images [{len(images)}, C, H, W]) returned shape "
                             f"{tuple(codes.shape)}; it must return codes [{len(images)}, D]")
        outputs.append(reduce(codes.detach().to("cpu", torch.float64)
                              .view(len(chunk), per_point, -1)))
    return torch.cat(outputs)


def _beta_vae_points(sampler: FactorSampler, represent: Represent, num_points: int,
                     batch_size: int, generator: torch.Generator,
                     images_per_call: int) -> tuple[np.ndarray, np.ndarray]:
    """Features mean |z1 - z2| [P, D] over batch_size pairs sharing a factor; the factor [P]."""
    fixed = _fixed_factors(sampler, num_points, generator)
    pairs = _sample_factors(sampler, num_points * batch_size * 2, generator)
    pairs = pairs.view(num_points, batch_size, 2, -1)
    points = torch.arange(num_points)
    pairs[points, :, 1, fixed] = pairs[points, :, 0, fixed]
    features = _reduce_codes(
        sampler, represent, pairs.view(num_points, batch_size * 2, -1),
        lambda codes: (codes[:, 0::2] - codes[:, 1::2]).abs().mean(dim=1), images_per_call)
    return features.numpy(), fixed.numpy()


def beta_vae_score(sampler: FactorSampler, represent: Represent, batch_size: int = 64,
                   num_train: int = 10000, num_eval: int = 5000, seed: int = 0,
                   images_per_call: int = 4096) -> dict[str, float]:
    """beta-VAE score: accuracy of a linear classifier telling which factor a batch of image
    pairs shares from their mean absolute code difference (chance = 1 / #factors).

    `represent(uint8 images [n, C, H, W]) -> codes [n, D]`; it sees 2 * batch_size images per
    point, in calls of about images_per_call images.
    """
    _check_counts("beta_vae_score", num_train, num_eval, batch_size, min_batch_size=1)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = _beta_vae_points(sampler, represent, num_train, batch_size, generator,
                                        images_per_call)
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"beta_vae_score: the {num_train} training points fixed fewer than "
                         "two different factors; it needs a sampler with at least two factors "
                         "of size > 1 and a larger num_train")
    x_eval, y_eval = _beta_vae_points(sampler, represent, num_eval, batch_size, generator,
                                      images_per_call)
    model = _logistic_regression(seed).fit(x_train, y_train)
    return {"beta_vae_score": float(np.mean(model.predict(x_eval) == y_eval)),
            "beta_vae_score_train": float(np.mean(model.predict(x_train) == y_train))}


def _least_variable(codes: torch.Tensor, variance: torch.Tensor,
                    active: torch.Tensor) -> torch.Tensor:
    """Active dim of least variance over each batch relative to the global variance [D];
    codes [P, B, D] -> [P]."""
    relative = codes.var(dim=1) / torch.where(active, variance, 1.0)
    return torch.where(active, relative, torch.inf).argmin(dim=1)


def _factor_vae_votes(sampler: FactorSampler, represent: Represent, num_points: int,
                      batch_size: int, variance: torch.Tensor, active: torch.Tensor,
                      generator: torch.Generator, images_per_call: int) -> torch.Tensor:
    """Votes [K, D]: how often fixing factor k made active code dim d the least variable,
    relative to its global variance [D]."""
    fixed = _fixed_factors(sampler, num_points, generator)
    factors = _sample_factors(sampler, num_points * batch_size, generator)
    factors = factors.view(num_points, batch_size, -1)
    points = torch.arange(num_points)
    factors[points, :, fixed] = factors[points, 0, fixed].unsqueeze(1)
    least_variable = _reduce_codes(sampler, represent, factors,
                                   lambda codes: _least_variable(codes, variance, active),
                                   images_per_call)
    votes = torch.zeros(len(sampler.factor_sizes), len(variance), dtype=torch.long)
    return votes.index_put_((fixed, least_variable), torch.ones_like(fixed), accumulate=True)


def factor_vae_score(sampler: FactorSampler, represent: Represent, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000, prune_dims_threshold: float = 0.05,
                     seed: int = 0, images_per_call: int = 4096) -> dict[str, float]:
    """FactorVAE score: accuracy of a majority vote mapping the code dim of least normalised
    variance, in a batch sharing one factor, to that factor (chance = 1 / #factors).

    Dims whose global std is below prune_dims_threshold (collapsed to the prior) are ignored;
    num_active_dims counts the others. `represent(uint8 images [n, C, H, W]) -> codes [n, D]`.
    """
    _check_counts("factor_vae_score", num_train, num_eval, batch_size, min_batch_size=2)
    if num_variance_estimate < 2:
        raise ValueError("factor_vae_score: num_variance_estimate must be >= 2 to estimate "
                         f"variances, got {num_variance_estimate}")
    _varying_factors(sampler)  # fail on bad data before the early exit for a collapsed code
    generator = torch.Generator().manual_seed(seed)
    factors = _sample_factors(sampler, num_variance_estimate, generator)
    codes = _reduce_codes(sampler, represent, factors.unsqueeze(1), lambda c: c[:, 0],
                          images_per_call)
    variance = codes.var(dim=0)
    active = variance.sqrt() >= prune_dims_threshold
    if not active.any():
        return {"factor_vae_score": 0.0, "factor_vae_score_train": 0.0, "num_active_dims": 0.0}
    train_votes, eval_votes = (
        _factor_vae_votes(sampler, represent, n, batch_size, variance, active, generator,
                          images_per_call)
        for n in (num_train, num_eval))
    # Each dim votes for the factor it was most often the least variable dim of (ties: first).
    dims = torch.arange(len(variance))
    vote_for = train_votes.argmax(dim=0)
    return {"factor_vae_score": eval_votes[vote_for, dims].sum().item() / num_eval,
            "factor_vae_score_train": train_votes[vote_for, dims].sum().item() / num_train,
            "num_active_dims": float(active.sum())}
