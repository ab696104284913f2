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

from vaelab.metric_specs import layer_metric, sampler_metric
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
        return {f"test/{layer_metric('active_units_layer', i + 1)}": int(layer.sum())
                for i, layer in enumerate(active.split(sizes))}

    def _disentanglement(self) -> dict[str, float]:
        """Every disentanglement metric; the sampled images are encoded on the model's device."""
        data = self.factor_data
        codes, factors = self.factor_codes.compute()
        grid = EncodedFactorGrid(data, lambda images: posterior_means(
            self.model, images, data.eval_batch_size, data.model_input))
        return disentanglement_scores(codes, factors, grid, self.disentanglement)


def fidelity_results(scores: Mapping[str, dict]) -> dict[str, float]:
    """test/fid, test/kid_mean, test/kid_std of the main (prior) sampler and
    test/<metric>_<name> of the others (metric_specs.sampler_metric), from
    SampleFidelity.compute()."""
    results = {}
    for name, score in scores.items():
        results.update({f"test/{sampler_metric(k, name)}": score[k]
                        for k in ("fid", "kid_mean", "kid_std")})
        results["test/fid_num_samples"] = score["num_real"]
    return results


def build_feature_extractor(enabled: bool, weights_path: str | None,
                            feature_extractor: nn.Module | None) -> nn.Module | None:
    """The FID/KID feature network (None when disabled); fails before any slow work."""
    from vaelab.metrics.image_quality import load_inception

    if not enabled:
        return None
    return feature_extractor if feature_extractor is not None else load_inception(weights_path)
