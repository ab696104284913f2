"""Decoder likelihoods p(x|z): log-probability summed over pixels, and the image a decoder shows.

Each likelihood also says how many decoder output channels it reads per image channel
(`param_channels`), which the decoder configs take through ${vaelab.param_channels:...}.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: Half the width of an 8-bit intensity bin once pixels are mapped to [-1, 1].
BIN_HALF_WIDTH = 1.0 / 255.0
# |x| above this (in [-1, 1]) is intensity 0 or 255, whose bin extends to -inf / +inf.
_EDGE = 0.999
# Bins narrower than this in logistic scale units: log(bin width) would underflow in float32,
# and the mid-bin density times the width is exact to float32 precision (error ~ width^2 / 24).
_NARROW_BIN = 1e-5
# |logits| below this: Taylor series for the continuous Bernoulli's normaliser and mean, whose
# closed forms cancel catastrophically at lambda = 1/2 (series error < 1e-7 here).
_CB_TAYLOR = 0.25


def _sum_pixels(log_p: torch.Tensor) -> torch.Tensor:
    """Per-pixel log-probabilities summed over each image; [B, ...] -> [B]."""
    return log_p.flatten(1).sum(dim=1)


def to_symmetric(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> [-1, 1], the range the discretised logistics are defined on."""
    return 2.0 * x - 1.0


def from_symmetric(x: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> pixels in [0, 1], clipped for display."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


class Likelihood(nn.Module):
    """Turns decoder outputs `params` into log p(x|z) and a displayable mean."""

    #: True when log p is a probability mass (so bits/dim is meaningful).
    discrete: bool = False

    @classmethod
    def param_channels(cls, image_channels: int) -> int:
        """Decoder output channels needed for images of `image_channels` channels."""
        return image_channels

    def param_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """The decoder output this likelihood reads for one image; (C, H, W) -> (C', H, W)."""
        c, *spatial = image_shape
        return (self.param_channels(c, **self._param_options()), *spatial)

    def _param_options(self) -> dict:
        """This instance's values of the options `param_channels` takes."""
        return {}

    def bits_per_dim_valid(self, x: torch.Tensor) -> bool:
        """Whether -log p(x|z) / (dims * log 2) is a code length in bits for this data x."""
        return self.discrete

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over all pixels; params [B, C', H, W], x [B, C, H, W] -> [B]."""
        raise NotImplementedError

    def nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z), the reconstruction term; [B]."""
        return -self.log_prob(params, x)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z], clipped to the [0, 1] pixel range for display; [B, C', H, W] -> [B, C, H, W]."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Bernoulli(sigmoid(logits)); for binary (or binarised) pixels."""

    discrete = True

    def bits_per_dim_valid(self, x: torch.Tensor) -> bool:
        # On grey levels the Bernoulli "probability" is not normalised over the data's values.
        return bool(((x == 0) | (x == 1)).all())

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -self.nll(params, x)

    def nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # BCE with logits is -log Bernoulli(x; sigmoid(params)), stable for large |logits|.
        return _sum_pixels(F.binary_cross_entropy_with_logits(params, x, reduction="none"))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)


class GaussianLikelihood(Likelihood):
    """p(x|z) = N(params, sigma^2) per pixel, with one sigma fixed or learned (as in sigma-VAE)."""

    def __init__(self, scale: float = 1.0, learn_scale: bool = False, min_scale: float = 1e-3):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"model.likelihood.scale must be > 0, got {scale}")
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.min_log_scale = math.log(min_scale)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # A floor on sigma stops a learned scale from collapsing onto discretised pixel values.
        log_scale = self.log_scale.clamp(min=self.min_log_scale)
        z2 = ((x - params) * torch.exp(-log_scale)).pow(2)
        return _sum_pixels(-0.5 * z2 - log_scale - 0.5 * math.log(2 * math.pi))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.clamp(0.0, 1.0)


def discretized_logistic_log_prob(x: torch.Tensor, loc: torch.Tensor,
                                  log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of a logistic(loc, exp(log_scale)) on [-1, 1] cut into 256 bins of width 2/255,
    the end bins reaching to -inf / +inf; x (on the bin centres), loc, log_scale broadcast."""
    inv_scale = torch.exp(-log_scale)
    upper = (x - loc + BIN_HALF_WIDTH) * inv_scale  # bin edges in scale units
    lower = (x - loc - BIN_HALF_WIDTH) * inv_scale
    width = (2 * BIN_HALF_WIDTH) * inv_scale  # not upper - lower, which cancels far from loc
    # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log sigmoid(-l) + log(1 - exp(-(u - l))):
    # no difference of nearly equal CDFs, so no cancellation in either tail.
    log_bin = (F.logsigmoid(upper) + F.logsigmoid(-lower)
               + torch.log(-torch.expm1(-width.clamp(min=_NARROW_BIN))))
    centre = (x - loc) * inv_scale
    log_width = math.log(2 * BIN_HALF_WIDTH) - log_scale  # finite where width underflows
    log_mid_bin = F.logsigmoid(centre) + F.logsigmoid(-centre) + log_width
    interior = torch.where(width >= _NARROW_BIN, log_bin, log_mid_bin)
    return torch.where(x < -_EDGE, F.logsigmoid(upper),
                       torch.where(x > _EDGE, F.logsigmoid(-lower), interior))


#: The width of an 8-bit intensity bin on [-1, 1].
BIN_WIDTH = 2 * BIN_HALF_WIDTH
# Edges this many bins from a sharp logistic's location (scale < half a bin) hold all its mass
# but e^-17 = 4e-8 of it per bin: the mean sums the sigmoids of the edges within this window.
_SHARP_WINDOW = 10


def discretized_logistic_mean(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """E[x] of the discretised logistic over the 256 bin centres c_b = -1 + b * BIN_WIDTH, the end
    bins reaching to -inf / +inf (so a location outside [-1, 1] gives a mean inside); same
    shape as loc. Summing by parts, E[x] = 1 - BIN_WIDTH * sum_{b<255} sigmoid((e_b - loc) / s)
    over the 255 inner edges e_b = c_b + BIN_WIDTH / 2."""
    scale = log_scale.exp().expand_as(loc)
    loc = loc.expand_as(scale)
    smooth = scale >= BIN_WIDTH / 2
    mean = torch.empty_like(loc)
    mean[smooth] = _smooth_mean(loc[smooth], scale[smooth])
    mean[~smooth] = _sharp_mean(loc[~smooth], scale[~smooth])
    return mean


def _smooth_mean(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The sum over edges of a logistic at least half a bin wide, by the midpoint rule with
    its end corrections (Euler-Maclaurin), f(x) = sigmoid((x - loc) / s), w = BIN_WIDTH:
    w sum f(e_b) = int_{-1}^{1} f - w^2/24 (f'(1) - f'(-1)) + 7 w^4/5760 (f3(1) - f3(-1)),
    f3 the third derivative; the next term is below 3e-6 for s >= w / 2."""
    top, bottom = (1 - loc) / scale, (-1 - loc) / scale
    integral = scale * (F.softplus(top) - F.softplus(bottom))
    # the sigmoid's first derivative is u, its third u (1 - 6u), u = sigmoid(z) sigmoid(-z)
    u_top = torch.sigmoid(top) * torch.sigmoid(-top)
    u_bottom = torch.sigmoid(bottom) * torch.sigmoid(-bottom)
    first = (u_top - u_bottom) / scale
    third = (u_top * (1 - 6 * u_top) - u_bottom * (1 - 6 * u_bottom)) / scale ** 3
    return 1 - integral + BIN_WIDTH ** 2 / 24 * first - 7 * BIN_WIDTH ** 4 / 5760 * third


def _sharp_mean(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The sum over edges of a logistic narrower than half a bin: the edges within
    _SHARP_WINDOW bins of loc, plus one for each edge above them (sigmoids of 1 to float
    precision)."""
    below = torch.floor((loc + 1) / BIN_WIDTH - 0.5)  # index of the edge just below loc
    total = (254 - below - _SHARP_WINDOW).clamp(0, 255)
    for offset in range(1 - _SHARP_WINDOW, _SHARP_WINDOW + 1):
        b = below + offset
        edge = -1 + (b + 0.5) * BIN_WIDTH
        total = total + torch.where((b >= 0) & (b <= 254),
                                    torch.sigmoid((edge - loc) / scale), 0.0)
    return 1 - BIN_WIDTH * total


SCALE_MODES = ("pixel", "channel")


def _check_scale_mode(scale: str) -> None:
    if scale not in SCALE_MODES:
        raise ValueError(f"model.likelihood.scale must be one of {SCALE_MODES}, got {scale!r} "
                         "(conf/model/likelihood/discretized_logistic.yaml)")


class DiscretizedLogisticLikelihood(Likelihood):
    """One logistic per pixel over the 256 intensities (Salimans et al. 2017), with a log-scale
    per pixel (params: C means, then C log-scales) or one learned per channel (params: C means)."""

    discrete = True

    def __init__(self, scale: str = "pixel", min_log_scale: float = -7.0,
                 image_shape: Sequence[int] | None = None):
        super().__init__()
        _check_scale_mode(scale)
        self.scale = scale
        self.min_log_scale = min_log_scale
        if scale == "channel":
            if image_shape is None:
                raise ValueError("model.likelihood.scale=channel learns one log-scale per "
                                 "channel: set model.likelihood.image_shape=${data.image_shape}")
            # Starts at scale 1 (half the [-1, 1] range): a broad guess the data narrows.
            self.log_scale = nn.Parameter(torch.zeros(image_shape[0]))

    @classmethod
    def param_channels(cls, image_channels: int, scale: str = "pixel") -> int:
        _check_scale_mode(scale)
        return 2 * image_channels if scale == "pixel" else image_channels

    def _param_options(self) -> dict:
        return {"scale": self.scale}

    def _loc_and_log_scale(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C', H, W] -> locations [B, C, H, W] in [-1, 1] units and floored log-scales."""
        if self.scale == "pixel":
            loc, log_scale = params.chunk(2, dim=1)
        else:
            loc, log_scale = params, self.log_scale.view(1, -1, 1, 1)
        return loc, log_scale.clamp(min=self.min_log_scale)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loc, log_scale = self._loc_and_log_scale(params)
        return _sum_pixels(discretized_logistic_log_prob(to_symmetric(x), loc, log_scale))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return from_symmetric(discretized_logistic_mean(*self._loc_and_log_scale(params)))


def _channel_shift(coeffs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_{j<c} coeffs[c, j] * values[j] for each channel c, the pairs (c, j) in row-major
    order: coeffs [B, K, M, H, W], values [B, C, M or 1, H, W] -> [B, C, M, H, W]."""
    b, k, m, h, w = coeffs.shape
    c = values.shape[1]
    rows, cols = torch.tril_indices(c, c, offset=-1, device=coeffs.device)
    shift = coeffs.new_zeros(b, c, m, h, w)
    return shift.index_add(1, rows, coeffs * values[:, cols])


class DiscretizedLogisticMixtureLikelihood(Likelihood):
    """M discretised logistics per pixel (PixelCNN++, NVAE); in each component a channel's
    location moves linearly with the earlier channels' values (G on R, B on R and G).

    params channels, each block channel-major: M mixture logits | C*M locations |
    C*M log-scales | K*M coefficients (tanh-squashed), K = C(C-1)/2.
    """

    discrete = True

    def __init__(self, num_mixtures: int = 10, min_log_scale: float = -7.0):
        super().__init__()
        if num_mixtures < 1:
            raise ValueError(f"model.likelihood.num_mixtures must be >= 1, got {num_mixtures}")
        self.num_mixtures = num_mixtures
        self.min_log_scale = min_log_scale

    @classmethod
    def param_channels(cls, image_channels: int, num_mixtures: int = 10) -> int:
        c = image_channels
        return num_mixtures * (1 + 2 * c + c * (c - 1) // 2)

    def _param_options(self) -> dict:
        return {"num_mixtures": self.num_mixtures}

    def _image_channels(self, n_params: int) -> int:
        """The image channel count C whose parameter count is n_params."""
        for c in range(1, n_params + 1):
            if self.param_channels(c, self.num_mixtures) == n_params:
                return c
        raise ValueError(
            f"{n_params} decoder output channels fit no image for {self.num_mixtures} mixture "
            "components: set model.decoder.out_channels to "
            "${vaelab.param_channels:${model.likelihood},${data.image_shape}}")

    def _split(self, params: torch.Tensor, c: int):
        """[B, C', H, W] -> mixture logits [B, M, H, W]; locations, floored log-scales
        [B, C, M, H, W]; coefficients in (-1, 1) [B, K, M, H, W]."""
        m = self.num_mixtures
        k = c * (c - 1) // 2
        logits, loc, log_scale, coeffs = params.split([m, c * m, c * m, k * m], dim=1)
        return (logits, loc.unflatten(1, (c, m)),
                log_scale.unflatten(1, (c, m)).clamp(min=self.min_log_scale),
                torch.tanh(coeffs.unflatten(1, (k, m))))

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, loc, log_scale, coeffs = self._split(params, x.shape[1])
        x = to_symmetric(x).unsqueeze(2)  # [B, C, 1, H, W], broadcast over components
        loc = loc + _channel_shift(coeffs, x)
        log_p = discretized_logistic_log_prob(x, loc, log_scale).sum(dim=1)  # [B, M, H, W]
        return _sum_pixels(torch.logsumexp(log_p + F.log_softmax(logits, dim=1), dim=1))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mixture's mean, sum_k pi_k E_k[x], each component's over the 256 intensities
        (`discretized_logistic_mean`). Within a component a channel's location moves with the
        earlier channels' values; it is taken at their component means, which is exact for the
        first channel (and grey images) and, for the others, wherever the earlier channels'
        spread stays clear of the end bins."""
        c = self._image_channels(params.shape[1])
        logits, loc, log_scale, coeffs = self._split(params, c)
        rows, cols = torch.tril_indices(c, c, offset=-1).tolist()  # coeffs' (channel, earlier)
        means = []  # [B, M, H, W] per channel, each moved by the earlier channels' means
        for channel in range(c):
            shift = sum(coeffs[:, k] * means[j] for k, (i, j) in enumerate(zip(rows, cols))
                        if i == channel)
            means.append(discretized_logistic_mean(loc[:, channel] + shift,
                                                   log_scale[:, channel]))
        weights = torch.softmax(logits, dim=1).unsqueeze(1)  # [B, 1, M, H, W]
        return from_symmetric((weights * torch.stack(means, dim=1)).sum(dim=2))


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda), lambda = sigmoid(logits): C = logits / tanh(logits / 2); any shape."""
    a = logits.abs()
    safe = a.clamp(min=_CB_TAYLOR)  # keeps the unused branch (and its gradient) finite
    # log(a / tanh(a / 2)) with tanh(a / 2) = (1 - e^-a) / (1 + e^-a)
    closed = torch.log(safe) - torch.log(-torch.expm1(-safe)) + F.softplus(-safe)
    u2 = (logits / 2).pow(2)
    series = math.log(2.0) + u2 / 3 - 7 * u2.pow(2) / 90 + 62 * u2.pow(3) / 2835
    return torch.where(a < _CB_TAYLOR, series, closed)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = 1 / (1 - e^-logits) - 1 / logits, which is 1/2 at logits = 0; any shape."""
    small = logits.abs() < _CB_TAYLOR
    safe = torch.where(small, torch.full_like(logits, _CB_TAYLOR), logits)
    closed = -1.0 / torch.expm1(-safe) - 1.0 / safe
    series = 0.5 + logits / 12 - logits.pow(3) / 720 + logits.pow(5) / 30240
    return torch.where(small, series, closed)


class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|z) = C(lambda) lambda^x (1 - lambda)^(1 - x), a density on [0, 1] for grey levels
    (Loaiza-Ganem & Cunningham 2019); params are logits of lambda."""

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_kernel = -F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return _sum_pixels(log_kernel + continuous_bernoulli_log_norm(params))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return continuous_bernoulli_mean(params)
