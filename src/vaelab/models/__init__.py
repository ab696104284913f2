from vaelab.models.elbo import gaussian_kl, kl_divergence, reparameterize
from vaelab.models.iwae import importance_weighted_log_likelihood, iwae_bound
from vaelab.models.likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
    Likelihood,
)
from vaelab.models.vae import VAE

__all__ = [
    "VAE",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "gaussian_kl",
    "importance_weighted_log_likelihood",
    "iwae_bound",
    "kl_divergence",
    "reparameterize",
]
