"""Active latent units (Burda et al., 2016): dimensions whose posterior mean varies with x,
i.e. Cov_x(E_q[z_d | x]) > threshold (0.01 in the paper)."""

import torch
from torchmetrics import Metric


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Which latent dimensions are active; posterior means [N, D] -> bool [D]."""
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"need posterior means of shape [N >= 2, D], got {tuple(mu.shape)}")
    return mu.double().var(dim=0) > threshold


class ActiveUnits(Metric):
    """Active units over every image seen, from running sums of mu and mu^2 (float64), which
    add up across DDP ranks; compute() -> the number of active dimensions."""

    full_state_update = False

    def __init__(self, latent_dim: int, threshold: float = 0.01):
        super().__init__()
        self.threshold = threshold
        self.add_state("sum", default=torch.zeros(latent_dim, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("sum_sq", default=torch.zeros(latent_dim, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, mu: torch.Tensor) -> None:
        """Add posterior means [B, D]."""
        mu = mu.detach().double()
        self.sum += mu.sum(0)
        self.sum_sq += mu.pow(2).sum(0)
        self.count += mu.shape[0]

    def variances(self) -> torch.Tensor:
        """The unbiased variance over images of each dim's posterior mean; [D]."""
        if self.count < 2:
            raise ValueError("active units need at least 2 images")
        mean = self.sum / self.count
        return (self.sum_sq - self.count * mean.pow(2)) / (self.count - 1)

    def compute(self) -> torch.Tensor:
        return (self.variances() > self.threshold).sum()
