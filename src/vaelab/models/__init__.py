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
from vaelab.models.objectives import (
    IWAE,
    BetaTCVAE,
    DipVAEI,
    DipVAEII,
    Elbo,
    FactorVAE,
    Objective,
)
from vaelab.models.vae import VAE

__all__ = [
    "IWAE",
    "VAE",
    "BetaTCVAE",
    "DipVAEI",
    "DipVAEII",
    "Elbo",
    "FactorVAE",
    "Objective",
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
