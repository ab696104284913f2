"""The disentanglement metrics of a trained VAE in vaelab-eval: posterior means of test images
gathered across DDP ranks for MIG, DCI, SAP and modularity, and the beta-VAE and FactorVAE scores
on images drawn from the factor grid, each distinct image encoded once."""

import math
import time
from collections.abc import Callable, Mapping

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vaelab.console import log
from vaelab.metrics import disentanglement as dm

Encode = Callable[[torch.Tensor], torch.Tensor]


def disentanglement_enabled(enabled, has_factors: bool) -> bool:
    """disentanglement.enabled resolved: `auto` means whenever the data has factors."""
    if enabled == "auto":
        return has_factors
    if not isinstance(enabled, bool):
        raise ValueError(f"disentanglement.enabled={enabled!r}: use auto, true or false "
                         "(conf/eval.yaml)")
    if enabled and not has_factors:
        raise ValueError("disentanglement.enabled=true needs data with ground-truth factors "
                         "(a run trained with data=sprites, dsprites or shapes3d), and this run's "
                         "data has none: set disentanglement.enabled=auto or false")
    return enabled


class FactorCodes(Metric):
    """Posterior means [N, D] and factor classes [N, K] of the test images with index <
    num_points, gathered across DDP ranks and ordered by index (the same points on any number
    of ranks)."""

    full_state_update = False

    def __init__(self, num_points: int):
        super().__init__()
        self.num_points = num_points
        for name in ("codes", "factors", "index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, mu: torch.Tensor, factors: torch.Tensor, index: torch.Tensor) -> None:
        """mu [B, D], factor classes [B, K], indices into the test split [B]."""
        keep = index.to(mu.device) < self.num_points
        # Appended even when empty, so every rank gathers tensors of the same rank and dtype.
        self.codes.append(mu[keep].detach().float())
        self.factors.append(factors.to(mu.device)[keep].long())
        self.index.append(index.to(mu.device)[keep].long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = dim_zero_cat(self.index).argsort()
        return dim_zero_cat(self.codes)[order], dim_zero_cat(self.factors)[order]


class EncodedFactorGrid:
    """A FactorSampler over `data`'s factors that encodes each factor combination's image once.

    Its `images_from_factors` hands the factor classes [n, K] through as stand-ins for the
    images, and `represent(factors)` returns the codes [n, D] of their images: `encode` (uint8
    images -> posterior means) runs on the combinations not seen before, the rest come from a
    table. The sampling scores draw far more images than the grid holds (2.9M draws at
    disentanglement_lib's defaults from dSprites' 737,280 images), and the codes are the ones
    encoding every draw would give.
    """

    def __init__(self, data, encode: Encode):
        self.data, self.encode = data, encode
        self.factor_sizes: list[int] = data.factor_sizes
        #: whether every factor combination has an image (the sampling scores need that)
        self.complete: bool = getattr(data, "is_complete_grid", True)
        self._encoded = torch.zeros(math.prod(self.factor_sizes), dtype=torch.bool)
        self._codes: torch.Tensor | None = None  # float32 [grid size, D], allocated on first use

    @property
    def num_encoded(self) -> int:
        """Distinct images encoded so far."""
        return int(self._encoded.sum())

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.data.sample_factors(n, generator)

    def images_from_factors(self, factors: torch.Tensor) -> torch.Tensor:
        return factors

    def represent(self, factors: torch.Tensor) -> torch.Tensor:
        """Codes of the images of factor classes [n, K]; -> float32 [n, D] on the CPU."""
        rows = self.data.grid_index(factors)
        new = rows[~self._encoded[rows]].unique()
        if len(new):
            codes = self.encode(self.data.images_from_factors(self.data.grid_factors(new)))
            if self._codes is None:
                self._codes = torch.zeros(len(self._encoded), codes.shape[1])
            self._codes[new] = codes.detach().float().cpu()
            self._encoded[new] = True
        return self._codes[rows]


def split_counts(available: int, num_train: int, num_test: int) -> tuple[int, int]:
    """(num_train, num_test), scaled down in the same ratio when fewer points are available."""
    if num_train + num_test <= available:
        return num_train, num_test
    train = round(available * num_train / (num_train + num_test))
    return train, available - train


def disentanglement_scores(codes: torch.Tensor, factors: torch.Tensor,
                           grid: EncodedFactorGrid, settings: Mapping) -> dict[str, float]:
    """Every metric of codes [N, D] with factor classes [N, K] (MIG, DCI, SAP, modularity and
    explicitness) and of images drawn from `grid` (beta-VAE and FactorVAE scores), each metric's
    time logged; `settings` is eval.yaml's disentanglement node. Keys without the test/ prefix."""
    num_train, num_test = split_counts(len(codes), settings["num_train"], settings["num_test"])
    if (num_train, num_test) != (settings["num_train"], settings["num_test"]):
        wanted = settings["num_train"] + settings["num_test"]
        log.warning(f"disentanglement: {len(codes)} test points for num_train="
                    f"{settings['num_train']} + num_test={settings['num_test']}: using "
                    f"{num_train} + {num_test} (the same ratio). The full counts need "
                    f"disentanglement.num_points >= {wanted} and a run trained with "
                    f"data.test_size >= {wanted}")
    seed, num_bins = settings["seed"], settings["num_bins"]
    split = {"num_train": num_train, "num_test": num_test, "seed": seed}
    metrics: dict[str, Callable[[], dict[str, float]]] = {
        "mig": lambda: dm.mig(codes[:num_train], factors[:num_train], num_bins),
        "dci": lambda: dm.dci(codes, factors, n_jobs=settings["n_jobs"], **split),
        "sap": lambda: dm.sap(codes, factors, **split),
        "modularity_explicitness": lambda: dm.modularity_explicitness(
            codes, factors, num_bins, **split),
    }
    if grid.complete:  # else skipped, as vaelab-eval said before any work (sampling_scores)
        metrics.update({
            "beta_vae_score": lambda: dm.beta_vae_score(
                grid, grid.represent, seed=seed, **settings["beta_vae"]),
            "factor_vae_score": lambda: dm.factor_vae_score(
                grid, grid.represent, seed=seed, **settings["factor_vae"]),
        })
    results = {"disentanglement_num_points": len(codes), "disentanglement_num_train": num_train,
               "disentanglement_num_test": num_test}
    start = time.perf_counter()
    for name, metric in metrics.items():
        began = time.perf_counter()
        results.update(metric())
        log.info(f"{name}: {time.perf_counter() - began:.1f} s")
    log.info(f"disentanglement metrics: {time.perf_counter() - start:.1f} s in total; the "
             f"sampling scores encoded {grid.num_encoded:,} distinct images")
    results["explicitness"] = results.pop("explicitness_test")
    if "num_active_dims" in results:
        results["factor_vae_active_dims"] = int(results.pop("num_active_dims"))
    return results


def sampling_scores(data) -> bool:
    """Whether the beta-VAE and FactorVAE scores can run on `data`: they draw images of any
    factor combination, which a subsampled file may lack. Says so (before any work) if not."""
    if data.is_complete_grid:
        return True
    log.warning("disentanglement: the data is a subsample of its factor grid (not every "
                f"combination of {data.factor_names} has an image): the beta-VAE and "
                "FactorVAE scores, which draw images of any combination, are left out; MIG, "
                "DCI, SAP and modularity/explicitness are computed")
    return False
