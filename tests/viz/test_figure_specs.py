"""vaelab.viz.figure_specs: one spec per figure, from which the drawing table, the config
schema and the options come (issue 22 item 8)."""

import dataclasses
import inspect
import re

import pytest
from hydra.errors import ConfigCompositionException

from vaelab.configs import compose_config
from vaelab.schemas import Figure, FigureSetConfig
from vaelab.viz import FIGURES
from vaelab.viz.figure_set import FigureSet
from vaelab.viz.figure_specs import SPECS

NAMES = [spec.name for spec in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_each_drawing_function_takes_its_specs_options(spec):
    parameters = list(inspect.signature(FIGURES[spec.name]).parameters)[2:]  # model, images
    extra = {"min_width"} if spec.sized else set()
    extra |= {"names"} if spec.name == "latent_scatter" else set()  # the data's class names
    assert set(parameters) - extra == {f.name for f in dataclasses.fields(spec.options)}
    assert ("min_width" in parameters) == spec.sized


def test_the_schema_and_the_drawing_table_come_from_the_specs():
    assert list(FIGURES) == NAMES == [member.value for member in Figure]
    fields = {f.name: f.type for f in dataclasses.fields(FigureSetConfig)}
    assert all(fields[spec.name] is spec.options for spec in SPECS)


def test_an_unknown_figure_is_refused_with_the_figures_of_the_specs(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"the figures are {NAMES}")):
        FigureSet(draw=["latent_manifold", "bogus"])
    with pytest.raises(ConfigCompositionException) as refused:
        compose_config("train", ["callbacks.latent_viz.figures.draw=[bogus]"], tmp_path)
    assert all(name in str(refused.value.__cause__) for name in NAMES)


def test_a_figure_set_built_without_options_takes_the_specs_defaults():
    figures = FigureSet(draw=["reconstructions"], interpolation={"steps": 4})
    assert figures.options["reconstructions"] == {"num_images": 32, "ncol": 8, "padding": 2}
    assert figures.options["interpolation"] == {"num_pairs": 8, "steps": 4,
                                                "method": "linear", "padding": 2}
