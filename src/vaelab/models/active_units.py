"""Active latent units (Burda et al. 2016): dimensions whose posterior mean varies with the data."""

import torch


def active_units(posterior_means: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Mask of units u with Cov_x(E_q[u|x]) > threshold; means [N, D] over a dataset -> bool [D]."""
    if posterior_means.dim() != 2 or posterior_means.shape[0] < 2:
        raise ValueError(f"need posterior means of shape [N >= 2, D], got "
                         f"{tuple(posterior_means.shape)}")
    return posterior_means.double().var(dim=0) > threshold
