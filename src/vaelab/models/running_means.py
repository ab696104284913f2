"""Dataset means of per-image quantities as one torchmetrics Metric (one update per batch)."""

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class RunningMeans(Metric):
    """Means over all images seen of named per-image columns, summed across DDP ranks.

    One stacked update per batch instead of one MeanMetric per quantity: on a small model the
    per-metric bookkeeping costs a measurable share of a training step (scripts/bench_train.py).
    """

    full_state_update = False

    def __init__(self, names: Sequence[str], persistent: bool = False):
        """`persistent`: keep the running sums in the module's state_dict (checkpoints)."""
        super().__init__()
        self.names = tuple(names)
        self.add_state("sums", default=torch.zeros(len(self.names)), dist_reduce_fx="sum",
                       persistent=persistent)
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum",
                       persistent=persistent)

    def update(self, values: torch.Tensor) -> None:
        """Add a batch of per-image values; [B, len(names)]."""
        # in place: `+=` would also re-assign the attributes through nn.Module's __setattr__
        self.sums.add_(values.detach().sum(dim=0))
        self.count.add_(values.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.sums / self.count))
