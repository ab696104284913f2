"""Every metric vaelab logs or evaluates, defined once: its name, what it means, and where it
is shown. The VAE (its logged columns), the progress bar, vaelab-train's and vaelab-eval's
tables and vaelab-report's columns all read SPECS, so a metric added here appears in each.

Names are as logged after the stage ("elbo" is train/elbo, val/elbo and test/elbo). A metric
with `per` is one metric per latent layer or per sampler, named by `layer_metric` or
`sampler_metric`.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby

#: the sampler whose FID/KID are test/fid, test/kid_*; the others' are test/fid_<name>, ...
MAIN_SAMPLER = "prior"


@dataclass(frozen=True)
class MetricSpec:
    """One metric; `description` has a {} for the layer's number or the sampler's description
    where `per` is "layer" or "sampler"."""

    name: str
    description: str
    #: its place among the VAE's per-image columns (checkpoints keep the training sums in this
    #: order); None: computed by the evaluation only
    column: int | None = None
    #: shown (train/ and val/) by the progress bar and the progress lines
    progress: bool = False
    #: a column of vaelab-report's Markdown table
    summary: bool = False
    #: needs data with ground-truth factors (disentanglement_lib's metrics)
    factors: bool = False
    #: a disentanglement score: what vaelab-report plots against the objective's strength
    score: bool = False
    #: "layer": one per latent layer of a hierarchy; "sampler": one per sampler but the main one
    per: str | None = None


def _disentanglement(name: str, description: str, score: bool = False,
                     summary: bool = False) -> MetricSpec:
    return MetricSpec(name, description, factors=True, score=score, summary=summary)


#: in the order of vaelab-eval's table; disentanglement scores are all in [0, 1] except
#: explicitness (an AUC, 0.5 = chance)
SPECS = (
    MetricSpec("elbo", "ELBO, 1 posterior sample (nats/image), all test images", column=1,
               progress=True, summary=True),
    MetricSpec("recon", "-log p(x|z), 1 sample (nats/image)", column=2, summary=True),
    MetricSpec("kl", "KL(q(z|x) || p(z)) (nats/image)", column=3, summary=True),
    MetricSpec("bpd", "-ELBO in bits/dim", column=4),
    MetricSpec("loss", "training objective on the test set", column=0, progress=True),
    MetricSpec("nll", "-log p(x) (-log p(x|y) if conditional), importance-weighted bound with K "
                      "samples (nats/image)"),
    MetricSpec("nll_elbo", "ELBO from the same K samples and images as test/nll (nats/image)"),
    MetricSpec("nll_bpd", "-log p(x) in bits/dim"),
    MetricSpec("nll_num_samples", "K, importance samples per image"),
    MetricSpec("nll_num_images", "test images in the log p(x) estimate (the first N)"),
    MetricSpec("active_units", "latent dims with Cov_x(E_q[z|x]) > threshold", summary=True),
    MetricSpec("latent_dim", "latent dims in total"),
    MetricSpec("recon_mse", "MSE, reconstruction mean vs test image"),
    MetricSpec("recon_psnr", "PSNR of that MSE (dB)"),
    MetricSpec("recon_ssim", "mean SSIM, reconstruction vs test image"),
    MetricSpec("fid", "FID, prior sample means vs test images"),
    MetricSpec("kid_mean", "KID, prior sample means vs test images"),
    MetricSpec("kid_std", "KID's standard deviation over subsets"),
    MetricSpec("fid_num_samples", "images per side in FID/KID"),
    MetricSpec("fid", "FID, {}", per="sampler"),
    MetricSpec("kid_mean", "KID, {}", per="sampler"),
    MetricSpec("kid_std", "KID's std, {}", per="sampler"),
    _disentanglement("beta_vae_score", "beta-VAE score: linear classifier's accuracy at telling "
                     "the fixed factor from |z1 - z2| of pairs", score=True, summary=True),
    _disentanglement("beta_vae_score_train", "beta-VAE score on its training points"),
    _disentanglement("factor_vae_score", "FactorVAE score: majority-vote accuracy, fixed factor "
                     "from the least-varying code dim", score=True, summary=True),
    _disentanglement("factor_vae_score_train", "FactorVAE score on its training points"),
    _disentanglement("factor_vae_active_dims", "code dims with std >= 0.05 that FactorVAE scores"),
    _disentanglement("mig", "MIG: gap between the two codes most informative about a factor, "
                     "/ H(factor)", score=True, summary=True),
    _disentanglement("dci_disentanglement", "DCI disentanglement: each code predicts one factor "
                     "(trees)", score=True, summary=True),
    _disentanglement("dci_completeness", "DCI completeness: each factor is predicted by one code",
                     score=True),
    _disentanglement("dci_informativeness", "DCI informativeness: tree accuracy on held-out "
                     "points", score=True),
    _disentanglement("dci_informativeness_train", "tree accuracy on the training points"),
    _disentanglement("sap", "SAP: accuracy gap of the two best single-code linear classifiers",
                     score=True, summary=True),
    _disentanglement("modularity", "modularity: each code carries information about one factor",
                     score=True, summary=True),
    _disentanglement("explicitness", "explicitness: one-vs-rest AUC of logistic regression on "
                     "all codes", score=True),
    _disentanglement("explicitness_train", "explicitness on the training points"),
    _disentanglement("disentanglement_num_points", "first test images (by index) behind "
                     "MIG/DCI/SAP/modularity"),
    _disentanglement("disentanglement_num_train", "of those, training points (MIG uses these)"),
    _disentanglement("disentanglement_num_test", "of those, held-out points"),
    MetricSpec("kl_layer", "KL of latent layer {} (1: next to x) given the layers above",
               column=5, per="layer"),
    MetricSpec("active_units_layer", "of the active units, in layer {}", per="layer"),
)


def layer_metric(name: str, layer: int) -> str:
    """The name of a per-layer metric for latent layer `layer` (1: next to x): kl_layer_2."""
    return f"{name}_{layer}"


def sampler_metric(name: str, sampler: str) -> str:
    """The name of a per-sampler metric: fid for the main sampler, fid_<sampler> otherwise."""
    return name if sampler == MAIN_SAMPLER else f"{name}_{sampler}"


def _instances(num_layers: int, samplers: Mapping[str, str]
               ) -> Iterator[tuple[MetricSpec, str, str]]:
    """(spec, name, description) of every metric in SPECS order; each run of per-layer or
    per-sampler specs is repeated per layer (hierarchies only) or per non-main sampler."""
    for per, group in groupby(SPECS, key=lambda s: s.per):
        group = list(group)
        if per is None:
            yield from ((s, s.name, s.description) for s in group)
        elif per == "layer" and num_layers > 1:
            yield from ((s, layer_metric(s.name, i), s.description.format(i))
                        for i in range(1, num_layers + 1) for s in group)
        elif per == "sampler":
            yield from ((s, sampler_metric(s.name, key), s.description.format(what))
                        for key, what in samplers.items() if key != MAIN_SAMPLER for s in group)


def descriptions(num_layers: int = 1, samplers: Mapping[str, str] | None = None,
                 factors: bool = True) -> dict[str, str]:
    """{"test/<name>": description} in table order, for a model with `num_layers` latent
    layers, the samplers {name: description} and (`factors`) the disentanglement metrics."""
    return {f"test/{name}": description
            for spec, name, description in _instances(num_layers, samplers or {})
            if factors or not spec.factors}


def per_image(num_layers: int = 1) -> tuple[str, ...]:
    """The VAE's per-image columns in order: the ELBO's terms (and each latent layer's KL
    where there are several)."""
    columns = [(spec.column, name) for spec, name, _ in _instances(num_layers, {})
               if spec.column is not None]
    return tuple(name for _, name in sorted(columns, key=lambda c: c[0]))


def names(**flags: bool) -> tuple[str, ...]:
    """The names of the plain (not per-layer or per-sampler) metrics whose fields equal
    `flags`, in SPECS order: names(summary=True, factors=False)."""
    return tuple(s.name for s in SPECS if s.per is None
                 and all(getattr(s, key) == value for key, value in flags.items()))
