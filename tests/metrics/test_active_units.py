"""Active units: the variance of posterior means over the data, as a function and a Metric."""

import pytest
import torch

from vaelab.metrics.active_units import ActiveUnits, active_units


def posterior_means(n: int = 1000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * torch.tensor([1.0, 0.2, 0.05])  # var 1, .04, .0025


def test_active_units_use_the_variance_of_posterior_means():
    mu = posterior_means()
    assert active_units(mu).tolist() == [True, True, False]
    assert active_units(mu, threshold=0.1).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(mu[:1])


def test_the_metric_over_batches_equals_the_function_on_all_points():
    mu = posterior_means(1001, seed=1) + 50.0  # a large mean: the running sums must not cancel
    metric = ActiveUnits(latent_dim=3, threshold=0.01)
    for chunk in mu.split(128):
        metric.update(chunk)
    torch.testing.assert_close(metric.variances(), mu.double().var(dim=0), rtol=1e-9, atol=0)
    assert int(metric.compute()) == int(active_units(mu).sum()) == 2


def test_states_of_shards_add_up_like_one_process():
    # what DDP's reduction does: sum the states of the ranks' metrics
    mu = posterior_means(500, seed=2)
    shards = [ActiveUnits(3) for _ in range(2)]
    for rank, shard in enumerate(shards):
        shard.update(mu[rank::2])
    merged = ActiveUnits(3)
    for name in ("sum", "sum_sq", "count"):
        setattr(merged, name, sum(getattr(s, name) for s in shards))
    torch.testing.assert_close(merged.variances(), mu.double().var(dim=0), rtol=1e-9, atol=0)
