"""Samplers of codes for a trained model, one config entry each (conf/samplers/): the prior at a
temperature, or a density fitted to the training set's posterior means after training (Ghosh et
al. 2020, "From Variational to Deterministic Autoencoders": ex-post density estimation).
vaelab-viz draws samples from each, vaelab-eval scores each sampler's samples with FID/KID.
"""

import torch

from vaelab.models.latents import posterior_means
from vaelab.validation import check_number


class Sampler:
    """Base class: `fit(model, datamodule)` once, then `sample(model, n, generator)` -> [n, D]."""

    def fit(self, model, datamodule) -> None:
        """Learn what the sampler needs of the trained model and its training data."""

    def sample(self, model, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class PriorSampler(Sampler):
    """z ~ p(z) with the prior's spread scaled by `temperature` (1: the prior itself)."""

    def __init__(self, temperature: float = 1.0):
        check_number("samplers.<name>.temperature", temperature, low=0)
        self.temperature = temperature

    def sample(self, model, n, generator=None):
        return model.prior.sample(n, generator, self.temperature)

    def describe(self) -> str:
        return f"prior samples at temperature {self.temperature:g}"


class GaussianMixtureSampler(Sampler):
    """z from a Gaussian mixture (scikit-learn's GaussianMixture, `num_components`,
    `covariance_type`) fitted to the posterior means of at most `num_images` random training
    images (all if null), chosen with `seed`."""

    def __init__(self, num_components: int = 10, covariance_type: str = "full",
                 num_images: int | None = 20000, seed: int = 0):
        check_number("samplers.<name>.num_components", num_components, low=1, integer=True)
        if num_images is not None:
            check_number("samplers.<name>.num_images", num_images, low=num_components,
                         integer=True)
        self.num_components, self.covariance_type = num_components, covariance_type
        self.num_images, self.seed = num_images, seed
        self.mixture = None

    def fit(self, model, datamodule) -> None:
        from sklearn.mixture import GaussianMixture

        images = datamodule.images("train")
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(len(images), generator=generator)[:self.num_images]
        chosen = chosen.sort().values.to(images.device)
        conditions = model.condition_of(datamodule.labels("train")[chosen])
        codes = posterior_means(model, images[chosen], datamodule.eval_batch_size,
                                datamodule.model_input, conditions)
        self.mixture = GaussianMixture(self.num_components, covariance_type=self.covariance_type,
                                       random_state=self.seed).fit(codes.double().cpu().numpy())

    def sample(self, model, n, generator=None):
        if self.mixture is None:
            raise RuntimeError("fit the GaussianMixtureSampler to a trained model first")
        # sklearn draws from a NumPy seed; take it from the generator so a seed repeats
        self.mixture.random_state = int(torch.randint(2**31 - 1, (1,), generator=generator))
        codes, _ = self.mixture.sample(n)
        # GaussianMixture.sample groups its draws by component: shuffle them back
        order = torch.randperm(n, generator=generator)
        return torch.as_tensor(codes, dtype=torch.float32)[order]

    def describe(self) -> str:
        return (f"a {self.num_components}-component Gaussian mixture ({self.covariance_type}) "
                "fitted to training posterior means")
