"""Structured-config schemas: dataclasses in Hydra's ConfigStore that validate config groups at
compose time (unknown keys, wrong types, invalid choices). Kept free of torch, so composing a
config (`vaelab-train --cfg job`) stays fast.
"""

from dataclasses import field, make_dataclass
from enum import Enum

from hydra.core.config_store import ConfigStore

from vaelab.viz.figure_specs import SPECS

#: the figure names conf/figures/*.yaml may draw (one per figure spec)
Figure = Enum("Figure", [(spec.name, spec.name) for spec in SPECS])

#: The schema of conf/figures/*.yaml (see conf/figures/default.yaml for what each means): what
#: to draw, from which images, and each figure's options (its spec's dataclass).
FigureSetConfig = make_dataclass("FigureSetConfig", [
    ("_target_", str, "vaelab.viz.figure_set.FigureSet"),
    ("draw", list[Figure], field(default_factory=lambda: list(Figure))),
    ("split", str, "val"),
    ("batch_size", int, 1000),
    ("min_width", int, 400),
    *[(spec.name, spec.options, field(default_factory=spec.options)) for spec in SPECS],
])


def register_schemas() -> None:
    """conf/figures/*.yaml start from `figures/schema` (their defaults list names it)."""
    ConfigStore.instance().store(group="figures", name="schema", node=FigureSetConfig)
