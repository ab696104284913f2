"""vaelab.metric_specs: every metric defined once; eval's table, the report, the progress bar
and the VAE's logged columns all read it (issue 22 item 8)."""

import dataclasses

import pytest
import torch

from vaelab import metric_specs
from vaelab.callbacks.progress import format_metrics
from vaelab.console import metrics_table
from vaelab.metric_specs import (
    MetricSpec,
    descriptions,
    layer_metric,
    names,
    per_image,
    sampler_metric,
)
from vaelab.metrics.evaluation import fidelity_results
from vaelab.report import write_markdown


@pytest.fixture
def added_metric(monkeypatch):
    """The registry with one metric more (a report column) and recon in the progress bar."""
    specs = tuple(dataclasses.replace(s, progress=True) if s.name == "recon" else s
                  for s in metric_specs.SPECS)
    monkeypatch.setattr(metric_specs, "SPECS",
                        (*specs, MetricSpec("sharpness", "mean gradient magnitude of the "
                                                         "reconstructions", summary=True)))


def test_a_metric_added_to_the_registry_is_in_the_table_the_report_and_the_progress_bar(
        added_metric, tmp_path):
    table = metrics_table({"test/elbo": -80.0, "test/sharpness": 0.25}, descriptions(), "eval")
    assert "test/sharpness" in table and "mean gradient magnitude of the reconstructions" in table

    row = {"num": 0, "job": "0", "status": "completed", "beta": 1.0, "objective": "Elbo",
           "strength": 1.0, "elbo": -80.0, "recon": 70.0, "kl": 10.0, "sharpness": 0.25,
           "error": None, "overrides": ""}
    write_markdown(tmp_path, tmp_path, [row], [], "test", [])
    header = (tmp_path / "sweep.md").read_text().split("| job |", 1)[1].split("\n", 1)[0]
    assert header.split("|")[-2].strip() == "sharpness"

    line = format_metrics({"train/loss": 81.0, "train/recon": 70.0, "val/recon": 71.0})
    assert line == "train/loss=81.000 train/recon=70.000 val/recon=71.000"


def test_the_progress_line_shows_loss_and_elbo_of_training_and_validation():
    metrics = {f"{stage}/{name}": 1.0 for stage in ("train", "val", "test")
               for name in ("loss", "elbo", "recon")}
    assert format_metrics(metrics) == \
        "train/loss=1.000 train/elbo=1.000 val/loss=1.000 val/elbo=1.000"


def test_the_tables_and_columns_read_from_the_registry():
    assert per_image() == ("loss", "elbo", "recon", "kl", "bpd")
    assert per_image(3)[5:] == ("kl_layer_1", "kl_layer_2", "kl_layer_3")
    assert names(progress=True) == ("elbo", "loss")
    assert names(summary=True, factors=False) == ("elbo", "recon", "kl", "active_units")
    assert names(score=True, summary=True) == ("beta_vae_score", "factor_vae_score", "mig",
                                               "dci_disentanglement", "sap", "modularity")
    table = descriptions(2, {"prior": "prior samples", "gmm": "a mixture"}, factors=False)
    assert list(table)[-7:] == ["test/fid_gmm", "test/kid_mean_gmm", "test/kid_std_gmm",
                                "test/kl_layer_1", "test/active_units_layer_1",
                                "test/kl_layer_2", "test/active_units_layer_2"]
    assert table["test/fid_gmm"] == "FID, a mixture"
    assert table["test/kl_layer_2"] == "KL of latent layer 2 (1: next to x) given the layers above"
    assert "test/fid_prior" not in table and "test/mig" not in table


def test_per_layer_and_per_sampler_names_come_from_one_function_each():
    assert layer_metric("kl_layer", 2) == "kl_layer_2"
    assert sampler_metric("fid", "prior") == "fid" and sampler_metric("fid", "gmm") == "fid_gmm"
    score = {"fid": 1.0, "kid_mean": 2.0, "kid_std": 3.0, "num_real": 10, "num_fake": 10}
    assert set(fidelity_results({"prior": score, "gmm": score})) == {
        "test/fid", "test/kid_mean", "test/kid_std", "test/fid_num_samples",
        "test/fid_gmm", "test/kid_mean_gmm", "test/kid_std_gmm"}


def test_the_vae_logs_its_registry_columns_with_their_values():
    from helpers.models import binary_images, tiny_vae

    model = tiny_vae()
    x = binary_images(8)
    torch.manual_seed(0)
    _, values, out = model.batch_values(x)
    assert model.metric_names == per_image()
    for name in ("elbo", "recon", "kl"):
        assert torch.equal(values[:, model.metric_names.index(name)], out[name])
