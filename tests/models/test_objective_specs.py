"""Each objective names its own label and regularisation strength (the report reads them from
the class, issue 22 item 8)."""

from pathlib import Path

import pytest
import yaml

from vaelab.models import objectives
from vaelab.report import objective_class, objective_label

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "objective"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_configured_objective_has_a_label_and_a_strength(path):
    name = yaml.safe_load(path.read_text())["_target_"].rsplit(".", 1)[-1]
    found = objective_class(name)
    assert found is not objectives.Objective and found.label
    key, symbol = found.strength
    assert key.startswith("model.") and symbol


def test_the_report_reads_an_objectives_own_label_and_strength(monkeypatch):
    class Sharp(objectives.Elbo):
        label = "sharp VAE"
        strength = ("model.objective.weight", "w")

    monkeypatch.setattr(objectives, "Sharp", Sharp, raising=False)
    assert objective_label("Sharp") == "sharp VAE"
    assert objective_class("Sharp").strength == ("model.objective.weight", "w")
    assert objective_label("DipVAEII") == "DIP-VAE-II"
    assert objective_class("FactorVAE").strength == ("model.objective.gamma", "γ")
    # anything else (another package's class, nothing) gets the defaults: its name, model.beta
    assert objective_label("Mine") == "Mine" and objective_label("") == ""
    assert objective_class("Discriminator").strength == ("model.beta", "β")
