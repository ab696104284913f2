"""Optimiser settings applied to an optimiser restored from a checkpoint (a leaf module: the
model and the run management both use it)."""

import torch


def apply_configured_optimizer(optimizer: torch.optim.Optimizer, configured: dict,
                               schedulers: list) -> list[str]:
    """Set the configured hyperparameters (lr, betas, ...) on an optimizer restored from a
    checkpoint; returns what changed. A scheduled lr keeps its progress: it is rescaled by
    new initial lr / old initial lr, and the schedulers' base_lrs follow."""
    changes = []
    for i, group in enumerate(optimizer.param_groups):
        for key, value in configured.items():
            if key not in group:
                continue
            value = type(group[key])(value) if isinstance(group[key], tuple) else value
            if key == "lr":
                initial = group.get("initial_lr", group["lr"])
                if value == initial:
                    continue
                changes.append(f"lr {initial:g} -> {value:g}")
                group["lr"] = group["lr"] * value / initial
                if "initial_lr" in group:
                    group["initial_lr"] = value
                for scheduler in schedulers:
                    if hasattr(scheduler, "base_lrs"):
                        scheduler.base_lrs[i] = value
            elif group[key] != value:
                changes.append(f"{key} {group[key]} -> {value}")
                group[key] = value
    return changes
