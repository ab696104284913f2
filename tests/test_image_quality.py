"""FID/KID and reconstruction metrics: clear failure without weights, working with a stand-in."""

import socket

import pytest
import torch
from torch import nn

from vaelab.metrics import SampleFidelity, load_inception, reconstruction_metrics, to_rgb_uint8


class TinyFeatures(nn.Module):
    """A stand-in for Inception: uint8 RGB [B, 3, H, W] -> 8 features [B, 8]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x.float() / 255.0).mean(dim=(2, 3))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty torch hub cache, whatever the machine has."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_fid_without_weights_or_network_names_the_option(offline):
    with pytest.raises(RuntimeError, match=r"fid\.weights_path=.*fid\.enabled=false"):
        load_inception(None)


def test_fid_with_a_missing_weights_file_names_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fid\.weights_path=.*does not exist"):
        load_inception(str(tmp_path / "inception.pth"))


def digits_like(n: int, seed: int, brightness: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 12, 12, generator=g) * brightness).clamp(0, 1)


def test_fid_and_kid_with_a_stand_in_extractor():
    real = digits_like(120, 0, 1.0)

    def scores(fake: torch.Tensor) -> dict:
        fidelity = SampleFidelity(TinyFeatures(), kid_subsets=5, kid_subset_size=50)
        for start in range(0, 120, 40):
            fidelity.update(real[start:start + 40], real=True)
            fidelity.update(fake[start:start + 40], real=False)
        return fidelity.compute()["fake"]

    same, other = scores(real.clone()), scores(digits_like(120, 1, 0.4))
    assert same["num_real"] == same["num_fake"] == 120
    assert abs(same["fid"]) < 1e-6 and abs(same["kid_mean"]) < 1e-3
    assert other["fid"] > 0.01 and other["kid_mean"] > same["kid_mean"]


def test_grey_images_become_rgb_uint8():
    rgb = to_rgb_uint8(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3))
    assert rgb.dtype == torch.uint8 and rgb.shape == (1, 3, 1, 3)
    assert rgb[0, :, 0].tolist() == [[0, 128, 255]] * 3


def test_reconstruction_metrics_of_perfect_and_noisy_reconstructions():
    x = digits_like(16, 0, 1.0)
    perfect = reconstruction_metrics(ssim_kernel_size=5)
    perfect.update(x, x)
    noisy = reconstruction_metrics(ssim_kernel_size=5)
    noisy.update((x + 0.1).clamp(0, 1), x)
    p, n = perfect.compute(), noisy.compute()
    assert p["mse"] == 0 and p["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert 0 < n["mse"] <= 0.01 and n["psnr"] >= 20 and n["ssim"] < 1
