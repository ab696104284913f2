from vaelab.metrics.digit_features import DigitFeatures
from vaelab.metrics.image_quality import (
    SampleFidelity,
    load_inception,
    reconstruction_metrics,
    to_rgb_uint8,
)

__all__ = ["DigitFeatures", "SampleFidelity", "load_inception", "reconstruction_metrics",
           "to_rgb_uint8"]
from vaelab.metrics.disentanglement import (  # noqa: E402
    FactorSampler,
    beta_vae_score,
    dci,
    factor_vae_score,
    mig,
    modularity_explicitness,
    sap,
)

__all__ += ["FactorSampler", "beta_vae_score", "dci", "factor_vae_score", "mig",
            "modularity_explicitness", "sap"]
