"""Samplers of codes for a trained model: the prior at a temperature, and a Gaussian mixture
fitted to the training set's posterior means (ex-post density estimation)."""

import pytest
import torch

from helpers.models import tiny_vae
from vaelab.models.latents import posterior_means
from vaelab.models.samplers import GaussianMixtureSampler, PriorSampler


class Images:
    """A stand-in DataModule: random binary images, no labels needed (unconditional model)."""

    eval_batch_size = 100

    def __init__(self, n: int = 600):
        g = torch.Generator().manual_seed(0)
        self._images = (torch.rand(n, 1, 8, 8, generator=g) < 0.3).to(torch.uint8) * 255

    def images(self, split):
        return self._images

    def labels(self, split):
        return torch.zeros(len(self._images), dtype=torch.long)

    def model_input(self, images, train=False):
        return images.float() / 255


def test_prior_sampler_scales_the_prior_by_its_temperature():
    model = tiny_vae(4)
    hot = PriorSampler(1.0).sample(model, 5, torch.Generator().manual_seed(0))
    cold = PriorSampler(0.3).sample(model, 5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(cold, 0.3 * hot)
    with pytest.raises(ValueError, match="temperature"):
        PriorSampler(-1.0)


def test_gaussian_mixture_sampler_matches_the_posterior_means_moments():
    model, data = tiny_vae(3), Images()
    sampler = GaussianMixtureSampler(num_components=3, num_images=500, seed=0)
    sampler.fit(model, data)
    codes = posterior_means(model, data.images("train"), 100, data.model_input)
    samples = sampler.sample(model, 20_000, torch.Generator().manual_seed(1))
    assert samples.shape == (20_000, 3) and samples.dtype == torch.float32
    torch.testing.assert_close(samples.mean(0), codes.mean(0), atol=0.1 * codes.std(), rtol=0)
    torch.testing.assert_close(samples.std(0), codes.std(0), atol=0.0, rtol=0.15)
    # a seed repeats the samples; draws are not grouped by component
    again = sampler.sample(model, 20_000, torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)
    assert not torch.equal(samples, sampler.sample(model, 20_000,
                                                   torch.Generator().manual_seed(2)))
    labels = torch.as_tensor(sampler.mixture.predict(samples[:200].double().numpy()))
    assert (labels[1:] != labels[:-1]).any()


def test_a_sampler_must_be_fitted_first_and_needs_enough_images():
    with pytest.raises(RuntimeError, match="fit"):
        GaussianMixtureSampler().sample(tiny_vae(), 3)
    with pytest.raises(ValueError, match="num_images"):
        GaussianMixtureSampler(num_components=10, num_images=5)
