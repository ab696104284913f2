"""Figures of a sweep: one point per job (rate-distortion, a metric against beta), and rows of
samples, one row per job."""

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def rate_distortion(rates: Sequence[float], distortions: Sequence[float],
                    labels: Sequence[str]) -> Figure:
    """KL (rate) against -log p(x|z) (distortion), in nats, each point labelled; the dashed line
    is the best job's ELBO (rate + distortion = -ELBO, the lines of slope -1)."""
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(rates, distortions, zorder=3)
    for r, d, label in zip(rates, distortions, labels, strict=True):
        ax.annotate(label, (r, d), textcoords="offset points", xytext=(5, 5), fontsize=8)
    best = min(r + d for r, d in zip(rates, distortions, strict=True))
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    ax.plot(xlim, [best - x for x in xlim], "--", color="grey", lw=1,
            label=f"best ELBO = {-best:.2f} nats")
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) [nats]")
    ax.set_ylabel("distortion: -log p(x|z) [nats]")
    ax.set_title("rate-distortion, one point per job")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def metric_vs_beta(betas: Sequence[float], values: Sequence[float], ylabel: str,
                   title: str, ceiling: float | None = None, ceiling_label: str = "") -> Figure:
    """A metric against beta (log axis when every beta is positive); `ceiling` draws a limit."""
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.add_subplot()
    order = sorted(range(len(betas)), key=lambda i: betas[i])
    xs, ys = [betas[i] for i in order], [values[i] for i in order]
    ax.plot(xs, ys, "o-" if len(set(xs)) == len(xs) else "o")
    if ceiling is not None:
        ax.axhline(ceiling, ls="--", color="grey", lw=1, label=ceiling_label or f"{ceiling:g}")
        ax.legend(fontsize=8)
    if all(b > 0 for b in betas):
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(xs)), [f"{b:g}" for b in sorted(set(xs))])
        ax.minorticks_off()
    ax.set_xlabel("beta")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def sample_rows(rows: Sequence[torch.Tensor], labels: Sequence[str]) -> Figure:
    """One row of images per job, labelled; each row [n, C, H, W] in [0, 1]."""
    fig = Figure(figsize=(1.2 * max(len(r) for r in rows), 1.5 * len(rows)),
                 layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, images, label in zip(axes, rows, labels, strict=True):
        grid = make_grid(images.float().cpu(), nrow=len(images), padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, loc="left", fontsize=9)
    return fig
