"""Matplotlib charts of the latent space: class-coloured scatter and KL per latent dimension.

Figures are built with the object API on the Agg canvas (no pyplot state), so they are safe in
callbacks, worker threads and headless machines.
"""

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vaelab.models.elbo import gaussian_kl

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
                   point_size: float = 4.0, names: Sequence[str] | None = None) -> Figure:
    """Posterior means mu [N, D] in the plane (projected if D > 2), one colour per label [N];
    the legend shows names[label] when `names` is given."""
    xy, (xlabel, ylabel) = project_2d(mu, method, seed)
    fig = Figure(figsize=tuple(figsize), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=point_size, alpha=0.6, linewidths=0)
    else:
        labels = labels.detach().cpu().numpy()
        for c, colour in class_colours(np.unique(labels)).items():
            sel = labels == c
            label = names[c] if names is not None and 0 <= c < len(names) else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=point_size, color=colour, alpha=0.6,
                       linewidths=0, label=label)
        ax.legend(title="class", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3,
                  frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"posterior means of {len(xy)} images")
    return fig


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over images of KL(q(z_d|x) || N(0, 1)) in nats; [N, D] -> [D]."""
    return gaussian_kl(mu.float(), logvar.float()).mean(dim=0)


def kl_per_dim_chart(mu: torch.Tensor, logvar: torch.Tensor, collapsed_below: float = 0.01,
                     figsize: Sequence[float] = (6.0, 3.5), dpi: int = 100) -> Figure:
    """Bar chart of the mean KL of each latent dim; bars under `collapsed_below` nats are grey."""
    kl = kl_per_dimension(mu, logvar).cpu().numpy()
    active = kl >= collapsed_below
    fig = Figure(figsize=tuple(figsize), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(kl)), kl, color=np.where(active, "tab:blue", "tab:gray"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"KL per dimension: {int(active.sum())}/{len(kl)} active "
                 f"(>= {collapsed_below:g} nats), total {kl.sum():.2f} nats")
    return fig
