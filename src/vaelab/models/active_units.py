"""Active latent units (Burda et al., 2016): dimensions whose posterior mean varies with x,
i.e. Cov_x(E_q[z_d | x]) > threshold (0.01 in the paper)."""

import torch

from vaelab.data.in_memory import InMemoryDataModule
from vaelab.models.vae import VAE


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Which latent dimensions are active; posterior means [N, D] -> bool [D]."""
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"need posterior means of shape [N >= 2, D], got {tuple(mu.shape)}")
    return mu.double().var(dim=0) > threshold


@torch.no_grad()
def posterior_means(model: VAE, datamodule: InMemoryDataModule, images: torch.Tensor,
                    batch_size: int) -> torch.Tensor:
    """E_q[z|x] of uint8 images [N, C, H, W] -> [N, latent_dim], on the model's device."""
    means = [model.encode(datamodule.to_float(chunk.to(model.device)))[0]
             for chunk in images.split(batch_size)]
    return torch.cat(means)
