from vaelab.models.elbo import gaussian_kl, kl_divergence, reparameterize
from vaelab.models.likelihoods import BernoulliLikelihood, GaussianLikelihood, Likelihood
from vaelab.models.vae import VAE

__all__ = [
    "VAE",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "gaussian_kl",
    "kl_divergence",
    "reparameterize",
]
