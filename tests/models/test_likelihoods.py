"""Likelihoods for 8-bit images: normalised masses and densities, float32 accuracy against float64
references written here, finite gradients, and decoder output channels taken from the config."""

import math

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch.nn import functional as F

from vaelab.configs import compose_config, param_channels
from vaelab.models import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
)
from vaelab.models.likelihoods import discretized_logistic_log_prob, discretized_logistic_mean

VALUES = torch.arange(256.0) / 255  # every 8-bit intensity as the model sees it
PINNED = -1e4  # a location so far below 0 that intensity 0 has probability 1 in float32


def pinned_images(n_elements: int, shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """For each element e of a `shape` image, 256 images in which e runs through every intensity
    and every other element is 0: x [E * 256, *shape] and a mask [E * 256, *shape] of e."""
    eye = torch.eye(n_elements).view(n_elements, 1, *shape)
    x = (eye * VALUES.view(1, 256, *[1] * len(shape))).flatten(0, 1)
    return x, eye.bool().expand(n_elements, 256, *shape).flatten(0, 1)


def per_element_log_masses(lik, loc, log_scale, shape=(3, 2, 2)) -> torch.Tensor:
    """log sum_v P(element e = v) for every element of one image; [E]. Every other element is
    pinned (location PINNED, value 0, probability 1), so each image's log_prob is e's alone."""
    n = math.prod(shape)
    x, mask = pinned_images(n, shape)
    locs = torch.where(mask, loc.expand_as(x), torch.tensor(PINNED))
    params = locs if log_scale is None else torch.cat([locs, log_scale.expand_as(x)], dim=1)
    return torch.logsumexp(lik.log_prob(params, x).view(n, 256), dim=1)


def reference_log_prob(x, loc, log_scale):
    """Discretised logistic log-mass in float64, straight from the CDF; x in [0, 1]."""
    x, loc, scale = 2 * x.double() - 1, loc.double(), log_scale.double().exp()
    upper, lower = (x - loc + 1 / 255) / scale, (x - loc - 1 / 255) / scale
    # The difference of the two CDFs, taken in the tail where both are small (no cancellation).
    mass = torch.where(upper + lower < 0, torch.sigmoid(upper) - torch.sigmoid(lower),
                       torch.sigmoid(-lower) - torch.sigmoid(-upper))
    mass = torch.where(x < -0.999, torch.sigmoid(upper),
                       torch.where(x > 0.999, torch.sigmoid(-lower), mass))
    return mass.log()


def random_logistic(n: int, generator: torch.Generator):
    """n random pixels (a quarter at intensities 0 and 255), locations and log-scales in
    [-7, 10] (sharp to far wider than the range); each [n]."""
    g = generator
    x = torch.randint(0, 256, (n,), generator=g) / 255
    x[: n // 8], x[n // 8: n // 4] = 0.0, 1.0
    loc = torch.empty(n).uniform_(-1.5, 1.5, generator=g)
    log_scale = torch.empty(n).uniform_(-7, 10, generator=g)
    return x, loc, log_scale


def bits_per_dim(lik, params, x) -> float:
    return (-lik.log_prob(params, x) / (x[0].numel() * math.log(2))).mean().item()


# -- discretised logistic -------------------------------------------------------------------
def test_logistic_with_a_scale_per_pixel_sums_to_one_for_every_pixel_and_channel():
    g = torch.Generator().manual_seed(0)
    loc = torch.empty(1, 3, 2, 2).uniform_(-1.5, 1.5, generator=g)
    log_scale = torch.tensor([-7.0, -3.0, 0.0, 4.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    masses = per_element_log_masses(DiscretizedLogisticLikelihood("pixel"), loc, log_scale)
    torch.testing.assert_close(masses, torch.zeros(12), atol=1e-5, rtol=0)


def test_logistic_with_a_scale_per_channel_sums_to_one_for_every_pixel_and_channel():
    lik = DiscretizedLogisticLikelihood("channel", image_shape=(3, 2, 2))
    with torch.no_grad():
        lik.log_scale.copy_(torch.tensor([-7.0, 0.0, 3.0]))
    loc = torch.empty(1, 3, 2, 2).uniform_(-1.5, 1.5, generator=torch.Generator().manual_seed(1))
    masses = per_element_log_masses(lik, loc, None)
    torch.testing.assert_close(masses, torch.zeros(12), atol=1e-5, rtol=0)


def test_sharp_logistic_on_the_pixel_costs_almost_no_bits():
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(0)) / 255
    x[:, :, 0] = 0.0
    x[:, :, 1] = 1.0
    loc, log_scale = 2 * x - 1, torch.full_like(x, -7.0)
    params = torch.cat([loc, log_scale], dim=1)
    # PixelCNN++'s floor e^-7 leaves ~2.7% of the mass outside the pixel's bin.
    assert bits_per_dim(DiscretizedLogisticLikelihood(), params, x) < 0.05
    sharper = DiscretizedLogisticLikelihood(min_log_scale=-12.0)
    assert bits_per_dim(sharper, torch.cat([loc, log_scale - 5], dim=1), x) < 1e-3


@pytest.mark.parametrize("log_scale", [-1.0, 0.0, 2.0, 8.0])
def test_wide_logistic_costs_about_8_bits_on_uniform_pixels(log_scale):
    x = VALUES.view(256, 1, 1, 1)  # every intensity once: the uniform distribution
    params = torch.tensor([0.0, log_scale]).expand(256, 2).reshape(256, 2, 1, 1)
    bpd = bits_per_dim(DiscretizedLogisticLikelihood(), params, x)
    # No normalised mass over 256 values codes uniform data in fewer than 8 bits (Gibbs).
    assert bpd >= 8.0 - 1e-5
    if log_scale == -1.0:  # about the flattest logistic on [-1, 1]
        assert bpd < 8.3


def test_logistic_matches_a_float64_computation_incl_edges_and_extreme_scales():
    x, loc, log_scale = random_logistic(4000, torch.Generator().manual_seed(0))
    expected = reference_log_prob(x, loc, log_scale)
    finite = expected > -700  # beyond that float64 itself underflows
    assert finite.float().mean() > 0.8
    params = torch.stack([loc, log_scale], dim=1).view(-1, 2, 1, 1)
    got = DiscretizedLogisticLikelihood(min_log_scale=-7.0).log_prob(params, x.view(-1, 1, 1, 1))
    torch.testing.assert_close(got.double()[finite], expected[finite], rtol=1e-5, atol=1e-5)


def test_logistic_mid_bin_density_is_used_only_where_the_bin_width_underflows():
    # Scales of e^7 and e^100 (bins 1e-5 and 1e-46 wide in scale units): the CDF difference
    # underflows, the mass is the density at the bin centre times the bin width.
    x = torch.tensor([0.2, 0.5, 0.7])
    lik = DiscretizedLogisticLikelihood()
    for log_scale in (7.0, 100.0):
        params = torch.tensor([[0.1, log_scale]] * 3).view(3, 2, 1, 1)
        got = lik.log_prob(params, x.view(3, 1, 1, 1)).double()
        z = (2 * x.double() - 1 - 0.1) / math.exp(log_scale)
        expected = F.logsigmoid(z) + F.logsigmoid(-z) - log_scale + math.log(2 / 255)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("lik", [DiscretizedLogisticLikelihood(),
                                 DiscretizedLogisticMixtureLikelihood(num_mixtures=3)],
                         ids=["logistic", "mixture"])
def test_gradients_are_finite_at_the_edge_bins_and_for_extreme_params(lik):
    x = torch.tensor([0.0, 1.0, 128 / 255, 1 / 255, 254 / 255]).repeat(8)
    n = len(x)
    extreme = torch.tensor([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4, 100.0])
    g = torch.Generator().manual_seed(0)
    c_params = lik.param_shape((1, 1, 1))[0]
    params = extreme[torch.randint(0, 8, (n, c_params), generator=g)].view(n, c_params, 1, 1)
    params.requires_grad_()
    log_p = lik.log_prob(params, x.view(n, 1, 1, 1))
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(params.grad).all()


def direct_mean(log_p: torch.Tensor) -> torch.Tensor:
    """sum_v v P(v) over the 256 intensities (as pixels in [0, 1]), log_p [..., 256]."""
    return (log_p.double().exp() * VALUES.double()).sum(-1)


def test_logistic_mean_is_the_mean_over_the_256_intensities():
    """Sharp and broad scales, locations inside and outside [-1, 1] (where the end bins take
    the mass, and clipping the location was off by up to 0.35 of the range)."""
    g = torch.Generator().manual_seed(0)
    loc = torch.empty(4000).uniform_(-1.7, 1.7, generator=g)
    log_scale = torch.empty(4000).uniform_(-7, 0.5, generator=g)
    params = torch.stack([loc, log_scale], dim=1).view(-1, 2, 1, 1)
    log_p = discretized_logistic_log_prob(2 * VALUES.double() - 1, loc.double().view(-1, 1),
                                          log_scale.double().view(-1, 1))
    mean = DiscretizedLogisticLikelihood().mean(params).flatten()
    torch.testing.assert_close(mean.double(), direct_mean(log_p), atol=5e-6, rtol=0)
    clipped = ((loc + 1) / 2).clamp(0, 1)
    assert (clipped - direct_mean(log_p)).abs().max() > 0.3  # what the mean used to be


def test_scale_per_channel_needs_the_image_shape_and_a_known_mode_is_required():
    with pytest.raises(ValueError, match=r"model.likelihood.image_shape=\$\{data.image_shape\}"):
        DiscretizedLogisticLikelihood("channel")
    with pytest.raises(ValueError, match="must be one of .*'pixel', 'channel'.*got 'image'"):
        DiscretizedLogisticLikelihood("image")


# -- mixture of discretised logistics --------------------------------------------------------
def test_one_component_mixture_of_grey_pixels_is_the_single_logistic():
    g = torch.Generator().manual_seed(0)
    loc_scale = torch.randn(6, 2, 4, 4, generator=g) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    logit = torch.randn(6, 1, 4, 4, generator=g)
    x = torch.randint(0, 256, (6, 1, 4, 4), generator=g) / 255
    mixture = DiscretizedLogisticMixtureLikelihood(num_mixtures=1)
    single = DiscretizedLogisticLikelihood()
    torch.testing.assert_close(mixture.log_prob(torch.cat([logit, loc_scale], 1), x),
                               single.log_prob(loc_scale, x))


def test_one_component_mixture_of_rgb_without_coefficients_is_the_single_logistic():
    g = torch.Generator().manual_seed(1)
    loc_scale = torch.randn(6, 6, 4, 4, generator=g)  # R G B locations, R G B log-scales
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=g) / 255
    params = torch.cat([torch.randn(6, 1, 4, 4), loc_scale, torch.zeros(6, 3, 4, 4)], dim=1)
    mixture = DiscretizedLogisticMixtureLikelihood(num_mixtures=1)
    torch.testing.assert_close(mixture.log_prob(params, x),
                               DiscretizedLogisticLikelihood().log_prob(loc_scale, x))


def random_mixture_params(n: int, channels: int, m: int, g: torch.Generator) -> torch.Tensor:
    """[n, C', 1, 1] params of m components: spread logits, locations, log-scales in [-7, 3]."""
    k = channels * (channels - 1) // 2
    return torch.cat([
        torch.randn(n, m, generator=g) * 3,
        torch.empty(n, channels * m).uniform_(-1.2, 1.2, generator=g),
        torch.empty(n, channels * m).uniform_(-7, 3, generator=g),
        torch.randn(n, k * m, generator=g) * 2,
    ], dim=1).view(n, -1, 1, 1)


def test_mixture_of_grey_pixels_sums_to_one_over_all_256_values():
    params = random_mixture_params(50, 1, 5, torch.Generator().manual_seed(0))
    lik = DiscretizedLogisticMixtureLikelihood(num_mixtures=5)
    log_p = lik.log_prob(params.repeat_interleave(256, 0), VALUES.repeat(50).view(-1, 1, 1, 1))
    torch.testing.assert_close(torch.logsumexp(log_p.view(50, 256), 1), torch.zeros(50),
                               atol=1e-5, rtol=0)


def pin_channels(params: torch.Tensor, m: int, channels: list[int]) -> torch.Tensor:
    """RGB mixture params with the locations of `channels` moved to PINNED in every component,
    so those channels take value 0 with probability 1 and the rest keep their joint law."""
    pinned = params.clone()
    for c in channels:
        pinned[:, m + c * m: m + (c + 1) * m] = PINNED
    return pinned


def rgb_log_prob(lik, params, r, g, b) -> torch.Tensor:
    """log_prob of 1-pixel RGB images with the given intensity lists (broadcast); [N]."""
    r, g, b = (torch.as_tensor(v, dtype=torch.float32) / 255 for v in (r, g, b))
    rgb = torch.stack(torch.broadcast_tensors(r, g, b), dim=1).view(-1, 3, 1, 1)
    return lik.log_prob(params.expand(len(rgb), -1, -1, -1), rgb)


def test_mixture_of_rgb_pixels_has_conditionals_that_each_sum_to_one():
    m = 3
    lik = DiscretizedLogisticMixtureLikelihood(num_mixtures=m)
    params = random_mixture_params(1, 3, m, torch.Generator().manual_seed(0))
    levels = torch.arange(256)
    log_r = rgb_log_prob(lik, pin_channels(params, m, [1, 2]), levels, 0, 0)  # log p(r)
    torch.testing.assert_close(torch.logsumexp(log_r, 0), torch.tensor(0.0), atol=1e-5, rtol=0)
    for r, g in [(0, 0), (17, 255), (128, 64), (255, 250)]:
        log_rg = rgb_log_prob(lik, pin_channels(params, m, [2]), r, levels, 0)  # log p(r, g)
        # sum_g p(g | r) = 1 and sum_b p(b | r, g) = 1
        torch.testing.assert_close(torch.logsumexp(log_rg, 0), log_r[r], atol=1e-5, rtol=0)
        log_rgb = rgb_log_prob(lik, params, r, g, levels)
        torch.testing.assert_close(torch.logsumexp(log_rgb, 0), log_rg[g], atol=1e-5, rtol=0)


def test_mixture_mean_of_grey_pixels_is_the_mean_over_the_256_intensities():
    lik = DiscretizedLogisticMixtureLikelihood(num_mixtures=5)
    params = random_mixture_params(200, 1, 5, torch.Generator().manual_seed(1))
    x = VALUES.view(1, 256, 1, 1).expand(200, 256, 1, 1).reshape(-1, 1, 1, 1)
    log_p = lik.log_prob(params.repeat_interleave(256, dim=0), x).view(200, 256)
    torch.testing.assert_close(lik.mean(params).flatten().double(), direct_mean(log_p),
                               atol=2e-6, rtol=0)


def test_mixture_mean_weights_component_means_with_the_channel_dependence():
    """Each component's channel means over the 256 intensities, G's location moved by R's
    component mean and B's by R's and G's; exact per channel where the channels are
    independent (coefficients 0)."""
    m = 2
    params = random_mixture_params(1, 3, m, torch.Generator().manual_seed(2)).view(-1)
    weights = torch.softmax(params[:m], 0)
    mu_r, mu_g, mu_b = params[m:4 * m].view(3, m)
    s_r, s_g, s_b = params[4 * m:7 * m].view(3, m)
    c_gr, c_br, c_bg = torch.tanh(params[7 * m:].view(3, m))
    mean_r = discretized_logistic_mean(mu_r, s_r)
    mean_g = discretized_logistic_mean(mu_g + c_gr * mean_r, s_g)
    mean_b = discretized_logistic_mean(mu_b + c_br * mean_r + c_bg * mean_g, s_b)
    expected = torch.stack([(weights * v).sum() for v in (mean_r, mean_g, mean_b)])
    lik = DiscretizedLogisticMixtureLikelihood(num_mixtures=m)
    got = lik.mean(params.view(1, -1, 1, 1))
    torch.testing.assert_close(got.flatten(), (expected + 1) / 2)

    independent = params.clone()
    independent[7 * m:] = 0
    levels = 2 * VALUES.double() - 1
    per_component = discretized_logistic_log_prob(levels, params[m:4 * m].double().view(-1, 1),
                                                  params[4 * m:7 * m].double().view(-1, 1))
    direct = (direct_mean(per_component).view(3, m) * weights.double()).sum(1)
    torch.testing.assert_close(lik.mean(independent.view(1, -1, 1, 1)).flatten().double(),
                               direct, atol=2e-6, rtol=0)


@pytest.mark.parametrize(("channels", "expected"), [(1, 30), (3, 100), (2, 60)])
def test_mixture_param_channels(channels, expected):
    # M * (1 + 2C + C(C-1)/2): logits, locations, log-scales, coefficients
    assert DiscretizedLogisticMixtureLikelihood.param_channels(channels) == expected
    lik = DiscretizedLogisticMixtureLikelihood(num_mixtures=10)
    assert lik.param_shape((channels, 5, 7)) == (expected, 5, 7)
    assert lik.mean(torch.zeros(2, expected, 5, 7)).shape == (2, channels, 5, 7)


def test_mixture_mean_of_a_channel_count_that_fits_no_image_is_a_clear_error():
    with pytest.raises(ValueError, match="29 decoder output channels fit no image.*out_channels"):
        DiscretizedLogisticMixtureLikelihood(num_mixtures=10).mean(torch.zeros(1, 29, 2, 2))


# -- continuous Bernoulli --------------------------------------------------------------------
LAMBDAS = [0.5, 0.5 + 1e-4, 0.5 - 1e-4, 0.3, 0.9, 1e-4, 1 - 1e-4]


def logit(lam: float) -> float:
    return math.log(lam / (1 - lam))


@pytest.mark.parametrize("lam", LAMBDAS)
def test_continuous_bernoulli_integrates_to_one_and_has_its_mean(lam):
    xs = torch.linspace(0, 1, 20001, dtype=torch.float64).view(-1, 1, 1, 1)
    params = torch.full_like(xs, logit(lam))
    lik = ContinuousBernoulliLikelihood()
    density = lik.log_prob(params, xs).exp()
    torch.testing.assert_close(torch.trapezoid(density, xs.flatten()).item(), 1.0,
                               atol=1e-6, rtol=0)
    mean = torch.trapezoid(density * xs.flatten(), xs.flatten()).item()
    torch.testing.assert_close(lik.mean(params[:1]).item(), mean, atol=1e-6, rtol=0)


def test_continuous_bernoulli_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64) * 3
    x = torch.rand(4, 1, 6, 6, generator=g, dtype=torch.float64)
    reference = torch.distributions.ContinuousBernoulli(logits=logits)
    lik = ContinuousBernoulliLikelihood()
    torch.testing.assert_close(lik.log_prob(logits, x), reference.log_prob(x).flatten(1).sum(1))
    torch.testing.assert_close(lik.mean(logits), reference.mean)


def test_continuous_bernoulli_is_accurate_in_float32_near_one_half_and_for_large_logits():
    # torch.distributions works with probabilities, clamped near 0 and 1, and is off by
    # 0.2 nats at logits 20 in float32; the logits form log(l / tanh(l / 2)) is not.
    logits = torch.tensor([0.0, 1e-6, -1e-4, 0.2, -0.3, 1.0, 5.0, -20.0, 60.0, -90.0])
    l64 = logits.double()
    safe = torch.where(l64 == 0, torch.ones_like(l64), l64)
    expected_norm = torch.where(l64 == 0, torch.tensor(math.log(2.0), dtype=torch.float64),
                                torch.log(safe / torch.tanh(safe / 2)))
    expected_mean = torch.where(l64 == 0, torch.tensor(0.5, dtype=torch.float64),
                                -1 / torch.expm1(-safe) - 1 / safe)
    x = torch.zeros(len(logits), 1, 1, 1)
    lik = ContinuousBernoulliLikelihood()
    # at x = 0 the log-density is log(1 - lambda) + log C(lambda)
    got_norm = lik.log_prob(logits.view(-1, 1, 1, 1), x).double() - F.logsigmoid(-l64)
    torch.testing.assert_close(got_norm, expected_norm, atol=1e-6, rtol=0)
    torch.testing.assert_close(lik.mean(logits).double(), expected_mean, atol=1e-6, rtol=0)


def test_continuous_bernoulli_gradients_are_finite_at_one_half_and_far_from_it():
    logits = torch.tensor([0.0, 1e-7, 0.25, -0.25, 80.0, -80.0]).view(-1, 1, 1, 1)
    logits.requires_grad_()
    lik = ContinuousBernoulliLikelihood()
    (lik.log_prob(logits, torch.full_like(logits, 0.3)).sum() + lik.mean(logits).sum()).backward()
    assert torch.isfinite(logits.grad).all()


# -- bits/dim validity -----------------------------------------------------------------------
def test_bits_per_dim_are_valid_for_masses_of_the_data_only():
    binary = torch.bernoulli(torch.full((2, 1, 4, 4), 0.5))
    grey = torch.randint(0, 256, (2, 1, 4, 4)) / 255
    assert BernoulliLikelihood().bits_per_dim_valid(binary)
    assert not BernoulliLikelihood().bits_per_dim_valid(grey)
    for lik in (DiscretizedLogisticLikelihood(), DiscretizedLogisticMixtureLikelihood()):
        assert lik.bits_per_dim_valid(grey) and lik.bits_per_dim_valid(binary)
    for lik in (GaussianLikelihood(), ContinuousBernoulliLikelihood()):
        assert not lik.bits_per_dim_valid(grey)


# -- decoder output channels from the config -------------------------------------------------
@pytest.mark.parametrize("decoder", ["conv", "mlp"])
@pytest.mark.parametrize(("overrides", "param_channels"), [
    (["model/likelihood=discretized_logistic_mixture"], 30),
    (["model/likelihood=discretized_logistic_mixture", "model.likelihood.num_mixtures=2",
      "data.image_shape=[3,8,8]"], 20),
    (["model/likelihood=discretized_logistic"], 2),
    (["model/likelihood=discretized_logistic", "model.likelihood.scale=channel",
      "data.image_shape=[3,8,8]"], 3),
    (["model/likelihood=continuous_bernoulli"], 1),
    ([], 1),
])
def test_decoder_output_channels_come_from_the_likelihood_config(tmp_path, decoder, overrides,
                                                                 param_channels):
    cfg = compose_config("train", ["data=digits", "model/encoder=conv",
                                   f"model/decoder={decoder}", *overrides], tmp_path)
    assert cfg.model.decoder.out_channels == param_channels
    model = hydra.utils.instantiate(cfg.model)
    c, h, w = cfg.data.image_shape
    x = torch.randint(0, 256, (4, c, h, w)) / 255
    assert model.decode(torch.randn(4, cfg.model.latent_dim)).shape == (4, param_channels, h, w)
    out = model(x)
    assert torch.isfinite(out["elbo"]).all() and out["elbo"].shape == (4,)
    assert model.likelihood.mean(model.decode(torch.randn(4, cfg.model.latent_dim))).shape \
        == x.shape


def test_decoder_output_of_the_wrong_channel_count_names_the_likelihood(tmp_path):
    cfg = compose_config("train", ["data=digits", "model/likelihood=discretized_logistic_mixture",
                                   "model.decoder.out_channels=1"], tmp_path)
    model = hydra.utils.instantiate(cfg.model)
    with pytest.raises(ValueError, match=r"\(4, 1, 8, 8\) is not the \(4, 30, 8, 8\) that "
                                         r"DiscretizedLogisticMixtureLikelihood needs"):
        model(torch.rand(4, 1, 8, 8))


def test_param_channels_of_a_class_without_the_method_is_a_clear_error():
    with pytest.raises(ValueError, match="torch.nn.Identity has no param_channels.*out_channels"):
        param_channels(OmegaConf.create({"_target_": "torch.nn.Identity"}), [1, 8, 8])
