"""Attribute-vector figures: images beside their decodes moved along a latent direction."""

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def attribute_sweep_grid(inputs: torch.Tensor, decoded: torch.Tensor,
                         padding: int = 2) -> torch.Tensor:
    """One row per image: input, then its A decodes; [N,C,H,W] + [A,N,C,H,W] -> [3, H', W'].

    make_grid repeats a single channel three times, so grey and colour images come out as RGB.
    """
    if decoded.shape[1:] != inputs.shape:
        raise ValueError(f"decoded {tuple(decoded.shape)} must be [A, *{tuple(inputs.shape)}]")
    rows = torch.cat([inputs.unsqueeze(0), decoded]).transpose(0, 1)  # [N, 1 + A, C, H, W]
    return make_grid(rows.flatten(0, 1).float().cpu(), nrow=rows.shape[1], padding=padding,
                     pad_value=1.0)


def attribute_sweep_figure(inputs: torch.Tensor, panels: Sequence[tuple[torch.Tensor, str]],
                           alphas: Sequence[float], title: str, padding: int = 2) -> Figure:
    """attribute_sweep_grid of each panel (decoded [A, N, C, H, W], its title) side by side,
    columns labelled "input", "alpha=...", under an overall title."""
    n, (h, w) = len(inputs), inputs.shape[-2:]
    cols = 1 + len(alphas)
    scale = max(1.0, 48 / w)  # small images (MNIST, 16 px tests) drawn larger for legibility
    width = max(3.0, cols * (w + padding) * scale / 60)
    # The object API on Agg's canvas: no pyplot state, safe on headless machines.
    fig = Figure(figsize=(width * len(panels), n * (h + padding) * scale / 60 + 1.0), dpi=100)
    for i, (decoded, subtitle) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        grid = attribute_sweep_grid(inputs, decoded, padding)
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([padding + (w + padding) * (j + 0.5) for j in range(cols)],
                      ["input", *(f"α={a:g}" for a in alphas)])
        ax.set_yticks([])
        ax.tick_params(length=0)
        ax.set_title(subtitle, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
