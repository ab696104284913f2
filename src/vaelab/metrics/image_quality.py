"""Image quality: reconstruction error (MSE, PSNR, SSIM) and sample fidelity (FID, KID)."""

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.image import (
    FrechetInceptionDistance,
    KernelInceptionDistance,
    PeakSignalNoiseRatio,
    StructuralSimilarityIndexMeasure,
)
from torchmetrics.regression import MeanSquaredError
from torchmetrics.utilities import dim_zero_cat


def reconstruction_metrics(ssim_kernel_size: int = 11) -> MetricCollection:
    """MSE, PSNR (of the pooled MSE) and mean SSIM between images in [0, 1]."""
    return MetricCollection({
        "mse": MeanSquaredError(),
        "psnr": PeakSignalNoiseRatio(data_range=1.0),
        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=ssim_kernel_size),
    })


def to_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] with 1 or 3 channels -> uint8 RGB, as Inception expects; [B, 3, H, W]."""
    if images.shape[1] not in (1, 3):
        raise ValueError(f"FID/KID need 1- or 3-channel images, got {images.shape[1]} channels")
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def load_inception(weights_path: str | None = None) -> nn.Module:
    """torchmetrics' Inception-v3 (2048-d pool features) from `weights_path`, else its download.

    Raises a RuntimeError naming `fid.weights_path` when neither source works (e.g. offline).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchmetrics.image.fid import NoTrainInceptionV3

    how = (f"Download {URL_INCEPTION_V3} where there is network and pass "
           "fid.weights_path=<that .pth file>, or skip FID/KID with fid.enabled=false")
    path = None
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"fid.weights_path={path} does not exist. {how}")
    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(path) if path else None)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        source = f"loading {path}" if path else "downloading them (no fid.weights_path given)"
        raise RuntimeError(
            f"FID/KID need Inception-v3 weights and {source} failed: {err}. {how}"
        ) from err


class SampleFidelity(Metric):
    """FID and KID between real images and each of several generated sets (`sources`, e.g. one
    per sampler), as one torchmetrics Metric: each image's features are computed once and
    gathered from every DDP rank before compute().

    `feature_extractor` maps uint8 RGB images [B, 3, H, W] to features [B, F] (Inception-v3,
    or any stand-in module).
    """

    full_state_update = False

    def __init__(self, feature_extractor: nn.Module, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, sources: Sequence[str] = ("fake",)):
        super().__init__()
        self.extractor = feature_extractor.eval().requires_grad_(False)
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.sources = tuple(sources)
        self.add_state("real", default=[], dist_reduce_fx="cat")
        for source in self.sources:
            self.add_state(f"generated_{source}", default=[], dist_reduce_fx="cat")

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool = False, source: str | None = None
               ) -> None:
        """Add images in [0, 1], [B, C, H, W], to the real set or to generated set `source`
        (default: the first)."""
        device = next(self.extractor.parameters(), images).device
        features = self.extractor(to_rgb_uint8(images).to(device)).flatten(1).double()
        name = "real" if real else f"generated_{source or self.sources[0]}"
        getattr(self, name).append(features)

    def compute(self) -> dict[str, dict[str, float]]:
        """{source: {"fid", "kid_mean", "kid_std", "num_real", "num_fake"}}."""
        real = dim_zero_cat(self.real).cpu()
        return {source: self._scores(real, dim_zero_cat(getattr(self, f"generated_{source}"))
                                     .cpu()) for source in self.sources}

    def _scores(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        n = min(len(real), len(fake))
        if n < 2:
            raise ValueError(f"FID/KID need at least 2 real and 2 generated images, got "
                             f"{len(real)} and {len(fake)}")
        # Features are already extracted: the torchmetrics metrics see them through an identity.
        identity = nn.Identity()
        identity.num_features = real.shape[1]
        fid = FrechetInceptionDistance(feature=identity)
        with warnings.catch_warnings():  # KID's notice that it keeps all features: we do too
            warnings.simplefilter("ignore", UserWarning)
            kid = KernelInceptionDistance(feature=nn.Identity(), subsets=self.kid_subsets,
                                          subset_size=min(self.kid_subset_size, n))
        for metric in (fid, kid):
            metric.update(real, real=True)
            metric.update(fake, real=False)
        kid_mean, kid_std = kid.compute()
        return {"fid": float(fid.compute()), "kid_mean": float(kid_mean),
                "kid_std": float(kid_std), "num_real": len(real), "num_fake": len(fake)}
