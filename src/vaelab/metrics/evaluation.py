"""Every test metric of a trained VAE as torchmetrics Metrics updated in one Lightning test loop,
so `vaelab-eval trainer=ddp_sim` (or trainer=ddp) evaluates in parallel with the numbers of
one process: each rank scores its shard of the test set and the metrics add up across ranks.
"""

import math
from collections.abc import Callable, Mapping

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection, SumMetric

from vaelab.metrics.active_units import ActiveUnits
from vaelab.metrics.disentanglement_eval import (
    EncodedFactorGrid,
    FactorCodes,
    disentanglement_scores,
)
from vaelab.metrics.image_quality import SampleFidelity, reconstruction_metrics
from vaelab.models.iwae import importance_weighted_bounds
from vaelab.models.latents import decode_means, posterior_means
from vaelab.models.running_means import RunningMeans
from vaelab.models.samplers import Sampler
from vaelab.models.vae import VAE

#: What each metric in metrics.json means (also the table's last column).
DESCRIPTIONS = {
    "test/elbo": "ELBO, 1 posterior sample (nats/image), all test images",
    "test/recon": "-log p(x|z), 1 sample (nats/image)",
    "test/kl": "KL(q(z|x) || p(z)) (nats/image)",
    "test/bpd": "-ELBO in bits/dim",
    "test/loss": "training objective on the test set",
    "test/nll": "-log p(x) (-log p(x|y) if conditional), importance-weighted bound with K "
                "samples (nats/image)",
    "test/nll_elbo": "ELBO from the same K samples and images as test/nll (nats/image)",
    "test/nll_bpd": "-log p(x) in bits/dim",
    "test/nll_num_samples": "K, importance samples per image",
    "test/nll_num_images": "test images in the log p(x) estimate (the first N)",
    "test/active_units": "latent dims with Cov_x(E_q[z|x]) > threshold",
    "test/latent_dim": "latent dims in total",
    "test/recon_mse": "MSE, reconstruction mean vs test image",
    "test/recon_psnr": "PSNR of that MSE (dB)",
    "test/recon_ssim": "mean SSIM, reconstruction vs test image",
    "test/fid": "FID, prior sample means vs test images",
    "test/kid_mean": "KID, prior sample means vs test images",
    "test/kid_std": "KID's standard deviation over subsets",
    "test/fid_num_samples": "images per side in FID/KID",
}

#: The disentanglement metrics (data with ground-truth factors), disentanglement_lib's
#: definitions; all in [0, 1] except explicitness (an AUC, 0.5 = chance).
DISENTANGLEMENT_DESCRIPTIONS = {
    "test/beta_vae_score": "beta-VAE score: linear classifier's accuracy at telling the fixed "
                           "factor from |z1 - z2| of pairs",
    "test/beta_vae_score_train": "beta-VAE score on its training points",
    "test/factor_vae_score": "FactorVAE score: majority-vote accuracy, fixed factor from the "
                             "least-varying code dim",
    "test/factor_vae_score_train": "FactorVAE score on its training points",
    "test/factor_vae_active_dims": "code dims with std >= 0.05 that FactorVAE scores",
    "test/mig": "MIG: gap between the two codes most informative about a factor, / H(factor)",
    "test/dci_disentanglement": "DCI disentanglement: each code predicts one factor (trees)",
    "test/dci_completeness": "DCI completeness: each factor is predicted by one code",
    "test/dci_informativeness": "DCI informativeness: tree accuracy on held-out points",
    "test/dci_informativeness_train": "tree accuracy on the training points",
    "test/sap": "SAP: accuracy gap of the two best single-code linear classifiers",
    "test/modularity": "modularity: each code carries information about one factor",
    "test/explicitness": "explicitness: one-vs-rest AUC of logistic regression on all codes",
    "test/explicitness_train": "explicitness on the training points",
    "test/disentanglement_num_points": "first test images (by index) behind MIG/DCI/SAP/modularity",
    "test/disentanglement_num_train": "of those, training points (MIG uses these)",
    "test/disentanglement_num_test": "of those, held-out points",
}


class Evaluation(L.LightningModule):
    """Wraps a trained VAE for `trainer.test`: test batches (images, labels, indices) update

    - the one-sample ELBO terms exactly as the VAE's own test step does (the same random draws,
      so the numbers equal training's final test),
    - the K-sample importance-weighted bound and its ELBO on the first `nll_images` images,
    - active units, reconstruction MSE/PSNR/SSIM against `references` (grey levels before
      binarisation), and FID/KID of each sampler's samples (`samplers`, fitted when testing
      starts) against the first `fid_images` images (when `fidelity` is given),
    - with `disentanglement` settings (eval.yaml's node) and `factor_data` (a DataModule with
      factors): the posterior means and factor classes of the first `num_points` images, for
      MIG, DCI, SAP and modularity at the epoch's end, with the beta-VAE and FactorVAE scores
      on images drawn from the factor grid (vaelab.metrics.disentanglement_eval). Every rank
      computes the same numbers from the points gathered from all ranks.

    Draws beyond the ELBO's come from generators seeded with `seed` (+ rank), so they do not
    shift the ELBO's random stream.
    """

    def __init__(self, model: VAE, references: Callable[[torch.Tensor], torch.Tensor],
                 num_samples: int, max_values: int, nll_images: int | None,
                 active_threshold: float, ssim_kernel_size: int, seed: int,
                 fidelity: SampleFidelity | None = None, fid_images: int = 0,
                 samplers: Mapping[str, Sampler] | None = None,
                 disentanglement: Mapping | None = None, factor_data=None):
        super().__init__()
        self.model = model
        self.references = references
        self.num_samples, self.max_values, self.nll_images = num_samples, max_values, nll_images
        self.seed = seed
        self.elbo = RunningMeans(model.elbo_terms)
        self.nll = RunningMeans(("nll", "nll_elbo"))
        self.nll_count = SumMetric()
        self.active = ActiveUnits(model.latent_dim, active_threshold)
        self.recon = MetricCollection(reconstruction_metrics(ssim_kernel_size), prefix="recon_")
        self.fidelity = fidelity
        self.fid_images = fid_images
        self.samplers = dict(samplers or {})
        self.disentanglement, self.factor_data = disentanglement, factor_data
        self.factor_codes = FactorCodes(disentanglement["num_points"]) \
            if disentanglement is not None else None
        self.results: dict = {}
        self._pixels = 0

    def on_test_start(self) -> None:
        self.model.eval()
        self.model.setup_data(self.trainer.datamodule)
        if self.fidelity is not None:
            for sampler in self.samplers.values():
                sampler.fit(self.model, self.trainer.datamodule)
        seed = self.seed + self.global_rank
        self._generator = torch.Generator(self.device).manual_seed(seed)
        # each sampler its own stream (priors draw on the CPU), so adding one changes no other
        self._sample_generators = {name: torch.Generator().manual_seed(seed + i)
                                   for i, name in enumerate(self.samplers)}

    @torch.no_grad()
    def test_step(self, batch, batch_idx: int) -> None:
        x, labels, index = batch
        y = self.model.condition_of(labels)
        _, values, out = self.model.batch_values(x, y)  # the draws of the VAE's own test step
        # the ELBO's terms (and each latent layer's KL); the objective's follow
        self.elbo.update(values[:, :len(self.model.elbo_terms)])
        self._pixels = x[0].numel()

        in_nll = index < self.nll_images if self.nll_images is not None else \
            torch.ones_like(index, dtype=torch.bool)
        if in_nll.any():
            chosen = in_nll.to(x.device)
            log_px, elbo_k = importance_weighted_bounds(
                self.model, x[chosen], self.num_samples, self.max_values, self._generator,
                None if y is None else y[chosen])
            self.nll.update(torch.stack([-log_px, elbo_k], dim=1))
            self.nll_count.update(len(log_px))

        codes = out["q"].mean
        self.active.update(codes)
        if self.factor_codes is not None:
            self.factor_codes.update(codes, labels, index)
        reference = self.references(index).to(self.device).float().div_(255.0)
        self.recon.update(decode_means(self.model, codes, y=y), reference)
        if self.fidelity is not None:
            self._update_fidelity(reference, y, (index < self.fid_images).to(self.device))

    def _update_fidelity(self, reference: torch.Tensor, y: torch.Tensor | None,
                         chosen: torch.Tensor) -> None:
        """The chosen test images as real ones, and as many samples of each sampler (a
        conditional model's given the same images' conditions, so classes match)."""
        real = reference[chosen]
        if not len(real):
            return
        self.fidelity.update(real, real=True)
        y = None if y is None else y[chosen]
        for name, sampler in self.samplers.items():
            codes = sampler.sample(self.model, len(real), self._sample_generators[name])
            self.fidelity.update(decode_means(self.model, codes, y=y), source=name)

    def on_test_epoch_end(self) -> None:
        bpd_valid = bool(self.model.reports_bpd)
        results = {f"test/{k}": float(v) for k, v in self.elbo.compute().items()
                   if k != "bpd" or bpd_valid}
        if self.nll.update_called:
            nll = self.nll.compute()
            results["test/nll"], results["test/nll_elbo"] = float(nll["nll"]), \
                float(nll["nll_elbo"])
            results["test/nll_num_images"] = int(self.nll_count.compute())
            results["test/nll_num_samples"] = self.num_samples
            if bpd_valid:
                results["test/nll_bpd"] = results["test/nll"] / (self._pixels * math.log(2))
        results["test/active_units"] = int(self.active.compute())
        results.update(self._active_units_per_layer())
        results["test/latent_dim"] = self.model.latent_dim
        results.update({f"test/{k}": float(v) for k, v in self.recon.compute().items()})
        if self.fidelity is not None:
            results.update(fidelity_results(self.fidelity.compute()))
        if self.factor_codes is not None:
            results.update({f"test/{k}": v for k, v in self._disentanglement().items()})
        self.results = results
        for name, value in results.items():
            # compute() already reduced across ranks; sync_dist averages equal values
            self.log(name, float(value), sync_dist=True)

    def _active_units_per_layer(self) -> dict[str, int]:
        """test/active_units_layer_<l> of a model with several latent layers (1: next to x)."""
        sizes = self.model.layer_sizes
        if len(sizes) == 1:
            return {}
        active = self.active.variances() > self.active.threshold
        return {f"test/active_units_layer_{i + 1}": int(layer.sum())
                for i, layer in enumerate(active.split(sizes))}

    def _disentanglement(self) -> dict[str, float]:
        """Every disentanglement metric; the sampled images are encoded on the model's device."""
        data = self.factor_data
        codes, factors = self.factor_codes.compute()
        grid = EncodedFactorGrid(data, lambda images: posterior_means(
            self.model, images, data.eval_batch_size, data.model_input))
        return disentanglement_scores(codes, factors, grid, self.disentanglement)


#: the sampler whose FID/KID are test/fid, test/kid_*; the others' are test/fid_<name>, ...
MAIN_SAMPLER = "prior"


def fidelity_results(scores: Mapping[str, dict]) -> dict[str, float]:
    """test/fid, test/kid_mean, test/kid_std of the prior sampler (MAIN_SAMPLER) and
    test/<metric>_<name> of the others, from SampleFidelity.compute()."""
    results = {}
    for name, score in scores.items():
        suffix = "" if name == MAIN_SAMPLER else f"_{name}"
        results.update({f"test/{k}{suffix}": score[k] for k in ("fid", "kid_mean", "kid_std")})
        results["test/fid_num_samples"] = score["num_real"]
    return results


def layer_descriptions(num_layers: int) -> dict[str, str]:
    """The table's lines for the per-layer metrics of a model with several latent layers."""
    if num_layers == 1:
        return {}
    return {name: meaning for i in range(1, num_layers + 1) for name, meaning in (
        (f"test/kl_layer_{i}", f"KL of latent layer {i} (1: next to x) given the layers above"),
        (f"test/active_units_layer_{i}", f"of the active units, in layer {i}"))}


def sampler_descriptions(samplers: Mapping[str, Sampler]) -> dict[str, str]:
    """The table's lines for the FID/KID of the samplers other than the prior."""
    return {f"test/{k}_{name}": f"{what}, {sampler.describe()}"
            for name, sampler in samplers.items() if name != MAIN_SAMPLER
            for k, what in (("fid", "FID"), ("kid_mean", "KID"), ("kid_std", "KID's std"))}


def build_feature_extractor(enabled: bool, weights_path: str | None,
                            feature_extractor: nn.Module | None) -> nn.Module | None:
    """The FID/KID feature network (None when disabled); fails before any slow work."""
    from vaelab.metrics.image_quality import load_inception

    if not enabled:
        return None
    return feature_extractor if feature_extractor is not None else load_inception(weights_path)
