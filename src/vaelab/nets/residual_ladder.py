"""A convolutional ladder of residual cells grouped by resolution (the shape of VDVAE, Child
2021, and NVAE, Vahdat & Kautz 2020), for images of any H x W and channel count.

Resolutions: stage 0 is the image's H x W, each next stage halves it (rounding up), so a 28x28
image goes 28, 14, 7, 4, 2, 1. The bottom-up pass runs `encoder_blocks[s]` residual cells at
stage s and average-pools to the next; the top-down pass starts from a learned state at the last
(smallest) stage and runs `latent_layers[s]` latent layers at each stage, smallest first,
upsampling (nearest) between stages. A latent layer at stage s has `latent_channels` x H_s x W_s
codes; its prior cell reads the state h (and adds a residual to it), its posterior cell reads h
and the bottom-up activation of the same stage, and its codes enter h through a 1x1 conv and a
residual cell. The top layer (the first at the last stage) has the model's prior and posterior
components instead of cells: its features are a 1x1 conv of the last stage's activation.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.nets.ladders import Gaussian, Ladder
from vaelab.validation import check_number


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """(H_s, W_s) of each stage: the image's, then halved (rounded up) stage after stage."""
    sizes = [(height, width)]
    for _ in range(stages - 1):
        sizes.append(tuple(math.ceil(n / 2) for n in sizes[-1]))
    return sizes


class ResidualCell(nn.Module):
    """VDVAE's bottleneck cell: GELU, 1x1 conv to `middle` channels, two GELU + 3x3 convs (1x1
    at sizes of 2 pixels or less), GELU, 1x1 conv to `n_out`; plus the input if `residual`.
    The last conv starts at zero (`zero_last`: the cell starts as the identity / outputs 0) or
    scaled by `last_scale` (1/sqrt(cells) keeps a deep residual stream's variance in check)."""

    def __init__(self, n_in: int, middle: int, n_out: int, residual: bool, spatial: bool = True,
                 zero_last: bool = False, last_scale: float = 1.0):
        super().__init__()
        k = 3 if spatial else 1
        self.convs = nn.ModuleList([
            nn.Conv2d(n_in, middle, 1), nn.Conv2d(middle, middle, k, padding=k // 2),
            nn.Conv2d(middle, middle, k, padding=k // 2), nn.Conv2d(middle, n_out, 1)])
        self.residual = residual
        with torch.no_grad():
            self.convs[-1].weight.mul_(0.0 if zero_last else last_scale)
            self.convs[-1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs:
            out = conv(F.gelu(out))
        return x + out if self.residual else out


def allow_graphs_per_code(n: int) -> None:
    """Let torch.compile keep at least n graphs of one function before it falls back to eager.
    All cells share ResidualCell.forward, and dynamo's limit (8) counts graphs per function: the
    cells' shapes, kernel sizes and grad modes need one each (training and evaluation)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), n))


def _fit(h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The state at another stage's size (nearest-neighbour upsampling)."""
    return h if tuple(h.shape[-2:]) == tuple(size) else F.interpolate(h, size=size, mode="nearest")


class ResidualBottomUp(nn.Module):
    """x -> 3x3 conv -> per stage: residual cells, then 2x2 average pooling; -> the features of
    each latent layer (bottom first): its stage's activation [B, width, H_s, W_s], the top
    layer's a 1x1 conv of the last stage's, flattened [B, top_features]."""

    def __init__(self, channels: int, width: int, middle: int, blocks: Sequence[int],
                 layer_stages: Sequence[int], top_channels: int, condition_dim: int):
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.condition = nn.Linear(condition_dim, width) if condition_dim else None
        scale = 1 / math.sqrt(max(1, sum(blocks)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ResidualCell(width, middle, width, True, last_scale=scale)
                            for _ in range(n))) for n in blocks)
        self.top_head = nn.Conv2d(width, top_channels, 1)
        self.layer_stages = list(layer_stages)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        h = self.stem(x)
        if y is not None:
            h = h + self.condition(y.to(h.dtype))[:, :, None, None]
        activations = []
        for s, cells in enumerate(self.stages):
            if s:
                h = F.avg_pool2d(h, 2, ceil_mode=True)
            h = cells(h)
            activations.append(h)
        features = [activations[s] for s in self.layer_stages[:-1]]
        return [*features, self.top_head(activations[-1]).flatten(1)]


class ResidualTopDown(nn.Module):
    """The top-down path (see the module's docstring); the state h is [N, width, H_s, W_s]."""

    def __init__(self, image_size: tuple[int, int], width: int, middle: int, zdim: int,
                 layer_stages: Sequence[int], sizes: Sequence[tuple[int, int]],
                 out_channels: int, condition_dim: int):
        super().__init__()
        self.zdim, self.image_size = zdim, tuple(image_size)
        self.layer_sizes = [sizes[s] for s in layer_stages]
        top_h, top_w = sizes[layer_stages[-1]]
        self.start = nn.Parameter(torch.zeros(1, width, top_h, top_w))
        count = len(layer_stages)
        scale = 1 / math.sqrt(count)
        below = range(count - 1)
        spatial = [min(size) > 2 for size in self.layer_sizes]
        # p(z_l | z_>l) and a residual for h; its last conv at zero, so it starts at N(0, I)
        self.priors = nn.ModuleList(ResidualCell(width, middle, 2 * zdim + width, False,
                                                 spatial[i], zero_last=True) for i in below)
        self.posteriors = nn.ModuleList(ResidualCell(2 * width, middle, 2 * zdim, False,
                                                     spatial[i]) for i in below)
        self.projections = nn.ModuleList(nn.Conv2d(zdim, width, 1) for _ in range(count))
        with torch.no_grad():
            for projection in self.projections:
                projection.weight.mul_(scale)
        self.cells = nn.ModuleList(ResidualCell(width, middle, width, True, spatial[i],
                                                last_scale=scale) for i in range(count))
        self.condition = nn.Linear(condition_dim, width) if condition_dim else None
        self.out = nn.Conv2d(width, out_channels, 1)

    def absorb(self, layer: int, h: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        size = self.layer_sizes[layer]
        if h is None:
            h = self.start.expand(len(z), -1, -1, -1)
        z = z.view(len(z), self.zdim, *size)
        return self.cells[layer](h + self.projections[layer](z))

    def prior(self, layer: int, h: torch.Tensor) -> tuple[torch.Tensor, Gaussian]:
        h = _fit(h, self.layer_sizes[layer])
        mu, logvar, residual = self.priors[layer](h).split([self.zdim, self.zdim, h.shape[1]], 1)
        return h + residual, (mu.flatten(1), logvar.flatten(1))

    def posterior(self, layer: int, h: torch.Tensor, features: torch.Tensor,
                  prior: Gaussian) -> Gaussian:
        mu, logvar = self.posteriors[layer](torch.cat([h, features], dim=1)).chunk(2, dim=1)
        return mu.flatten(1), logvar.flatten(1)

    def output(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = _fit(h, self.image_size)
        if y is not None:
            h = h + self.condition(y.to(h.dtype))[:, :, None, None]
        return self.out(h)


class ResidualLadder(Ladder):
    """A convolutional hierarchy: `width` channels in the residual stream, `bottleneck` x width
    inside the cells, `encoder_blocks[s]` bottom-up cells and `latent_layers[s]` latent layers
    of `latent_channels` at stage s (s = 0 the image's size; the last stage holds the top
    layer); `top_features` for the top layer's posterior, `out_channels` for the likelihood.
    `compile`: torch.compile each residual cell with `compile_backend` (on a GPU inductor fuses
    their GELUs and convs; compiling takes tens of seconds first)."""

    def __init__(self, image_shape: Sequence[int], top_features: int,
                 encoder_blocks: Sequence[int] = (1, 1, 1),
                 latent_layers: Sequence[int] = (1, 1, 1), latent_channels: int = 4,
                 width: int = 32, bottleneck: float = 0.5,
                 out_channels: int | None = None, condition_dim: int = 0, compile: bool = False,
                 compile_backend: str = "inductor"):
        super().__init__()
        channels, height, wide = image_shape
        check_number("model.ladder.width", width, low=1, integer=True)
        self.layer_sizes = tuple(self.sizes(image_shape, latent_layers, latent_channels,
                                            encoder_blocks))
        stages = stage_sizes(height, wide, len(latent_layers))
        layer_stages = [s for s, n in enumerate(latent_layers) for _ in range(n)]
        top_pixels = math.prod(stages[-1])
        if top_features % top_pixels:
            raise ValueError(
                f"the top layer's posterior reads {top_features} features, not a whole number of "
                f"channels at the last stage's {stages[-1][0]}x{stages[-1][1]} pixels: give "
                "model.posterior a size per pixel (e.g. a context_dim that is a multiple of "
                f"{top_pixels}) or another number of stages")
        middle = max(1, round(width * bottleneck))
        self.encoder = ResidualBottomUp(channels, width, middle, encoder_blocks, layer_stages,
                                        top_features // top_pixels, condition_dim)
        self.decoder = ResidualTopDown((height, wide), width, middle, latent_channels,
                                       layer_stages, stages,
                                       channels if out_channels is None else out_channels,
                                       condition_dim)
        if compile:  # the cells in place (their weights' names stay); the loop stays eager
            cells = [cell for cell in self.modules() if isinstance(cell, ResidualCell)]
            allow_graphs_per_code(2 * len(cells))
            for cell in cells:
                cell.compile(backend=compile_backend)

    @classmethod
    def sizes(cls, image_shape: Sequence[int], latent_layers: Sequence[int],
              latent_channels: int, encoder_blocks: Sequence[int] = (1, 1, 1),
              **options) -> list[int]:
        check_number("model.ladder.latent_channels", latent_channels, low=1, integer=True)
        if len(encoder_blocks) != len(latent_layers):
            raise ValueError(f"model.ladder.encoder_blocks {list(encoder_blocks)} and "
                             f"latent_layers {list(latent_layers)} must name the same stages "
                             "(one entry per resolution, the image's first)")
        if not latent_layers or latent_layers[-1] < 1 or min(latent_layers) < 0:
            raise ValueError(f"model.ladder.latent_layers={list(latent_layers)}: give each "
                             "stage's number of latent layers (>= 0), at least 1 at the last "
                             "stage, which holds the top layer")
        stages = stage_sizes(image_shape[1], image_shape[2], len(latent_layers))
        return [latent_channels * math.prod(stages[s])
                for s, n in enumerate(latent_layers) for _ in range(n)]
