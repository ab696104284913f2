"""A small digit classifier whose penultimate layer stands in for Inception-v3 in FID/KID on
MNIST-like data (`fid.feature_extractor`), where Inception's weights cannot be downloaded.
Numbers in this feature space compare runs with each other, not with published Inception FIDs.

    python scripts/train_digit_features.py --data-dir <data> --out digits.pt  # once
    vaelab-eval ckpt_path=... \
        'fid.feature_extractor={_target_: vaelab.metrics.DigitFeatures, weights_path: digits.pt}'
"""

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class DigitFeatures(nn.Module):
    """Conv 32-64 with max pooling, a 128-unit layer (the features), 10 class logits;
    uint8 RGB images [B, 3, H, W] (any size: resized to 28 x 28 grey) -> features [B, 128]."""

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.classify = nn.Linear(128, 10)
        if weights_path is not None:
            path = Path(weights_path).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"DigitFeatures weights {path} do not exist: make them with "
                    "python scripts/train_digit_features.py --out <that file>")
            self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB [B, 3, H, W] -> grey floats in [0, 1], [B, 1, 28, 28]."""
        grey = images.float().mean(dim=1, keepdim=True) / 255.0
        return F.interpolate(grey, size=(28, 28), mode="bilinear", align_corners=False) \
            if grey.shape[-2:] != (28, 28) else grey

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self(images))
