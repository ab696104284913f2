from vaelab.models.distributions import (
    DiagonalGaussian,
    FlowPosterior,
    StandardNormal,
    gaussian_kl,
    kl_per_dimension,
    kl_per_image,
)
from vaelab.models.hvae import HierarchicalVAE
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
from vaelab.models.posteriors import DiagonalGaussianPosterior, IAFPosterior, Posterior
from vaelab.models.priors import (
    FlowPrior,
    MixtureOfGaussiansPrior,
    Prior,
    StandardNormalPrior,
    VampPrior,
)
from vaelab.models.vae import VAE

__all__ = [
    "IWAE",
    "VAE",
    "BernoulliLikelihood",
    "BetaTCVAE",
    "ContinuousBernoulliLikelihood",
    "DiagonalGaussian",
    "DiagonalGaussianPosterior",
    "DipVAEI",
    "DipVAEII",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "Elbo",
    "FactorVAE",
    "FlowPosterior",
    "FlowPrior",
    "GaussianLikelihood",
    "HierarchicalVAE",
    "IAFPosterior",
    "Likelihood",
    "MixtureOfGaussiansPrior",
    "Objective",
    "Posterior",
    "Prior",
    "StandardNormal",
    "StandardNormalPrior",
    "VampPrior",
    "gaussian_kl",
    "importance_weighted_log_likelihood",
    "iwae_bound",
    "kl_per_dimension",
    "kl_per_image",
]
