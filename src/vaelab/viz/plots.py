"""Matplotlib charts of the latent space: class-coloured scatter, KL per latent dimension, and
image grids framed with the latent values they were decoded at.

Figures are built with the object API on the Agg canvas (no pyplot state), so they are safe in
callbacks, worker threads and headless machines.
"""

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PROJECTIONS = ("pca", "tsne")


def project_2d(points: torch.Tensor, method: str = "pca",
               seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """[N, D] -> ([N, 2] coordinates, axis labels); 2-D points are returned as they are."""
    points = points.detach().cpu().double().numpy()
    if points.shape[1] < 2:
        raise ValueError(f"a 2-D scatter needs latent_dim >= 2, got {points.shape[1]}")
    if points.shape[1] == 2:
        return points, ("z[0]", "z[1]")
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(points)
        share = 100 * pca.explained_variance_ratio_
        return pca.transform(points), (f"PC 1 ({share[0]:.0f}% var.)",
                                       f"PC 2 ({share[1]:.0f}% var.)")
    if method == "tsne":
        from sklearn.manifold import TSNE

        # sklearn requires perplexity < N; 30 is its default for large N.
        perplexity = min(30.0, (len(points) - 1) / 3)
        xy = TSNE(n_components=2, init="pca", perplexity=perplexity,
                  random_state=seed).fit_transform(points)
        return xy, ("t-SNE 1", "t-SNE 2")
    raise ValueError(f"latent scatter method must be one of {PROJECTIONS}, got {method!r}")


def class_colours(classes: Sequence[int]) -> dict[int, tuple]:
    """A distinct colour per class; labels 0..19 keep the same colour in every figure."""
    classes = sorted(int(c) for c in classes)
    for size, name in ((10, "tab10"), (20, "tab20")):
        if classes and 0 <= classes[0] and classes[-1] < size:
            cmap = matplotlib.colormaps[name]
            return {c: cmap(c) for c in classes}
    cmap = matplotlib.colormaps["turbo"]
    return {c: cmap(x) for c, x in zip(classes, np.linspace(0, 1, len(classes)), strict=True)}


def latent_scatter(mu: torch.Tensor, labels: torch.Tensor | None = None, method: str = "pca",
                   seed: int = 0, figsize: Sequence[float] = (6.0, 5.0), dpi: int = 100,
                   point_size: float = 12.0, names: Sequence[str] | None = None) -> Figure:
    """Posterior means mu [N, D] in the plane (projected if D > 2), one colour per label [N];
    the legend shows names[label] when `names` is given."""
    xy, (xlabel, ylabel) = project_2d(mu, method, seed)
    fig = Figure(figsize=tuple(figsize), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, alpha=0.7, linewidths=0)
    else:
        labels = labels.detach().cpu().numpy()
        for c, colour in class_colours(np.unique(labels)).items():
            sel = labels == c
            label = names[c] if names is not None and 0 <= c < len(names) else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=point_size, color=colour, alpha=0.7,
                       linewidths=0, label=label)
        ax.legend(title="class", loc="center left", bbox_to_anchor=(1.0, 0.5),
                  markerscale=max(1.0, 6.0 / np.sqrt(point_size)), frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"posterior means of {len(xy)} images")
    return fig


def kl_per_dim_chart(kl_per_dim: torch.Tensor | None, means: torch.Tensor,
                     collapsed_below: float = 0.01, figsize: Sequence[float] = (6.0, 3.5),
                     dpi: int = 100) -> Figure:
    """Bar chart of the mean KL of each latent dim over images ([N, D]); bars under
    `collapsed_below` nats are grey. Where the model has no KL per dimension (kl_per_dim None:
    a prior or posterior that does not factorise), the variance of the posterior means `means`
    [N, D] per dim instead (Burda et al.'s active-unit statistic, same threshold)."""
    if kl_per_dim is not None:
        values, what = kl_per_dim.double().mean(dim=0).cpu().numpy(), "KL (nats)"
    else:
        values, what = means.double().var(dim=0).cpu().numpy(), "Var_x E[z|x]"
    active = values >= collapsed_below
    fig = Figure(figsize=tuple(figsize), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(values)), values, color=np.where(active, "tab:blue", "tab:gray"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel(what)
    if kl_per_dim is not None:
        title = (f"KL per dimension: {int(active.sum())}/{len(values)} active "
                 f"(>= {collapsed_below:g} nats), total {values.sum():.2f} nats")
    else:
        title = (f"the prior/posterior do not factorise, so no KL per dimension: variance of "
                 f"the posterior means, {int(active.sum())}/{len(values)} above "
                 f"{collapsed_below:g}")
    ax.set_title(title, fontsize=10 if kl_per_dim is not None else 8)
    return fig


def kl_per_layer_chart(kl_per_layer: torch.Tensor, figsize: Sequence[float] = (6.0, 3.5),
                       dpi: int = 100) -> Figure:
    """Bar chart of the mean KL of each latent layer over images ([N, L], layer 1 next to x),
    each bar labelled with its share of the total."""
    values = kl_per_layer.double().mean(dim=0).cpu().numpy()
    total = values.sum()
    fig = Figure(figsize=tuple(figsize), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(np.arange(1, len(values) + 1), values, color="tab:blue")
    shares = [f"{100 * v / total:.0f}%" if total > 0 else "" for v in values]
    ax.bar_label(bars, shares, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent layer (1: next to x)")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"KL per layer, given the layers above: total {total:.2f} nats", fontsize=10)
    return fig


def annotated_grid(image: torch.Tensor, nrow: int, ncol: int, padding: int,
                   col_labels: Sequence[str] | None = None,
                   row_labels: Sequence[str] | None = None, xlabel: str = "", ylabel: str = "",
                   title: str = "", min_width: int = 400, dpi: int = 100) -> Figure:
    """A make_grid image [3, H, W] of nrow x ncol tiles drawn with axes: a label under each
    column and beside each row (every k-th when there are many), pixels kept sharp."""
    _, height, width = image.shape
    scale = max(1, math.ceil(min_width / width))  # a whole factor: pixels stay square
    fig = Figure(figsize=(width * scale / dpi + 1.6, height * scale / dpi + 1.2), dpi=dpi,
                 layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    tile_w, tile_h = (width - padding) / ncol, (height - padding) / nrow
    for labels, count, tile, set_ticks in ((col_labels, ncol, tile_w, ax.set_xticks),
                                           (row_labels, nrow, tile_h, ax.set_yticks)):
        if labels is None:
            set_ticks([])
            continue
        every = max(1, int(np.ceil(count / 8)))
        shown = list(range(0, count, every))
        set_ticks([padding / 2 + tile * (i + 0.5) for i in shown], [labels[i] for i in shown])
    ax.tick_params(labelsize=8, length=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return fig
