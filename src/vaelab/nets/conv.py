"""Convolutional encoder and decoder that mirror each other for any C x H x W."""

from collections.abc import Sequence

import torch
from torch import nn

from vaelab.nets.layers import make_activation, with_condition


def conv_output_sizes(size: int, n_layers: int, kernel_size: int, stride: int,
                      padding: int) -> list[int]:
    """Spatial size after each of n strided convs, input first: [size, s1, ..., sn]."""
    sizes = [size]
    for _ in range(n_layers):
        sizes.append((sizes[-1] + 2 * padding - kernel_size) // stride + 1)
    return sizes


def _check_sizes(image_shape: Sequence[int], heights: list[int], widths: list[int]) -> None:
    if min(heights[-1], widths[-1]) < 1:
        raise ValueError(
            f"image {tuple(image_shape)} is too small for {len(heights) - 1} strided conv layers "
            f"(sizes {heights}): use fewer model.encoder/decoder channels or a smaller stride"
        )


def _block(conv: nn.Module, channels: int, batch_norm: bool, activation: str) -> list[nn.Module]:
    return [conv, *([nn.BatchNorm2d(channels)] if batch_norm else []), make_activation(activation)]


class ConvEncoder(nn.Module):
    """Strided convs -> flatten (and append the condition y) -> linear head: the features a
    posterior reads; [B, C, H, W] (, [B, condition_dim]) -> [B, out_features]."""

    def __init__(self, image_shape: Sequence[int], out_features: int,
                 channels: Sequence[int] = (32, 64), kernel_size: int = 4, stride: int = 2,
                 padding: int = 1, batch_norm: bool = False, activation: str = "relu",
                 condition_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        heights = conv_output_sizes(h, len(channels), kernel_size, stride, padding)
        widths = conv_output_sizes(w, len(channels), kernel_size, stride, padding)
        _check_sizes(image_shape, heights, widths)
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels):
            conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=not batch_norm)
            layers += _block(conv, c_out, batch_norm, activation)
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(channels[-1] * heights[-1] * widths[-1] + condition_dim,
                              out_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(with_condition(self.body(x), y))


class ConvDecoder(nn.Module):
    """z (with the condition y appended) -> linear -> transposed convs that retrace the
    encoder's sizes; [B, latent_dim] (, [B, condition_dim]) -> [B, out_channels, H, W]
    (out_channels: the likelihood's parameters, default C)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int,
                 channels: Sequence[int] = (64, 32), kernel_size: int = 4, stride: int = 2,
                 padding: int = 1, batch_norm: bool = False, activation: str = "relu",
                 out_channels: int | None = None, condition_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        out_channels = c if out_channels is None else out_channels
        # The sizes a mirrored encoder would pass through, smallest first.
        heights = conv_output_sizes(h, len(channels), kernel_size, stride, padding)[::-1]
        widths = conv_output_sizes(w, len(channels), kernel_size, stride, padding)[::-1]
        _check_sizes(image_shape, heights[::-1], widths[::-1])
        self.project = nn.Sequential(
            nn.Linear(latent_dim + condition_dim, channels[0] * heights[0] * widths[0]),
            make_activation(activation),
            nn.Unflatten(1, (channels[0], heights[0], widths[0])),
        )
        layers: list[nn.Module] = []
        outs = [*channels[1:], out_channels]
        for i, (c_in, c_out) in enumerate(zip(channels, outs)):
            # output_padding picks, of the sizes a stride-s transposed conv can reach, the one
            # the encoder came from, so odd sizes (7x7, 28x28, 30x30) come back exactly.
            base_h = (heights[i] - 1) * stride - 2 * padding + kernel_size
            base_w = (widths[i] - 1) * stride - 2 * padding + kernel_size
            conv = nn.ConvTranspose2d(c_in, c_out, kernel_size, stride, padding,
                                      output_padding=(heights[i + 1] - base_h,
                                                      widths[i + 1] - base_w),
                                      bias=not (batch_norm and i < len(outs) - 1))
            last = i == len(outs) - 1
            layers += [conv] if last else _block(conv, c_out, batch_norm, activation)
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.project(with_condition(z, y)))
