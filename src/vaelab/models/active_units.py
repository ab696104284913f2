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
def posterior_means(model: VAE, datamodule: InMemoryDataModule,
                    split: str = "val") -> torch.Tensor:
    """E_q[z | x] for every image of a val or test split; -> [N, latent_dim]."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    datamodule.setup("validate" if split == "val" else "test")
    loader = getattr(datamodule, f"{split}_dataloader")()
    means = []
    for images, _ in loader:
        x = datamodule.to_float(images.to(model.device), train=False)
        means.append(model.encode(x)[0].cpu())
    return torch.cat(means)
