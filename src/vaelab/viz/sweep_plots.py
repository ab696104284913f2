"""Figures of a sweep: one point per job (rate-distortion, a metric against beta), metrics
against a setting with one line per objective and the spread over seeds, and rows of samples,
one row per job."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SeedSpread:
    """The jobs of one line at one setting (its seeds): mean, min and max of x and of y."""

    setting: float
    x: tuple[float, float, float]
    y: tuple[float, float, float]
    count: int


def _mean_min_max(values: list[float]) -> tuple[float, float, float]:
    return sum(values) / len(values), min(values), max(values)


def seed_spreads(x: Sequence[float], y: Sequence[float | None], lines: Sequence[str],
                 settings: Sequence[float]) -> dict[str, list[SeedSpread]]:
    """Jobs grouped by line and setting, one value of each per job; jobs whose y is None are
    left out. -> {line: spreads in increasing setting}, lines in first-seen order."""
    groups: dict[str, dict[float, list[int]]] = {}
    for i, (line, setting) in enumerate(zip(lines, settings, strict=True)):
        if y[i] is not None:
            groups.setdefault(line, {}).setdefault(setting, []).append(i)
    return {line: [SeedSpread(setting, _mean_min_max([x[i] for i in jobs]),
                              _mean_min_max([y[i] for i in jobs]), len(jobs))
                   for setting, jobs in sorted(by_setting.items())]
            for line, by_setting in groups.items()}


def _error_bars(stats: list[tuple[float, float, float]]) -> list[list[float]]:
    """[[mean - min, ...], [max - mean, ...]]: matplotlib's asymmetric error bars."""
    return [[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]]


def metrics_by_line(metrics: Mapping[str, Sequence[float | None]], x: Sequence[float],
                    lines: Sequence[str], settings: Sequence[float], xlabel: str, title: str,
                    log_x: bool = False) -> Figure:
    """One panel per metric (name -> one value per job): one line per `lines` entry (e.g. the
    objective) through the mean over the jobs of each setting (its seeds), error bars from
    their min to their max in x and y (Locatello et al. 2019's spread over seeds)."""
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    colours = {line: f"C{i}" for i, line in enumerate(dict.fromkeys(lines))}
    for ax, (name, values) in zip(axes, metrics.items()):
        for line, spreads in seed_spreads(x, values, lines, settings).items():
            xs, ys = [s.x for s in spreads], [s.y for s in spreads]
            ax.errorbar([m for m, _, _ in xs], [m for m, _, _ in ys], xerr=_error_bars(xs),
                        yerr=_error_bars(ys), fmt="o-", capsize=3, ms=4, lw=1.2,
                        color=colours[line], label=line)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter("{x:g}")
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    legend = {}  # every line, whichever panels it has points in
    for ax in axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(legend.values(), legend.keys(), loc="outside lower center",
               ncols=max(1, min(len(legend), 5)), fontsize=8)
    fig.suptitle(title)
    return fig
