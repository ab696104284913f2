"""Every vaelab command the README shows composes as written: its config groups, options and keys
exist and resolve (placeholders such as <run> stand for a path). What the commands then do is
tested elsewhere; this catches a README that drifted from the configs."""

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from vaelab.configs import compose_config
from vaelab.run_dir import task_config

README = Path(__file__).parents[1] / "README.md"
#: console command -> its config
COMMANDS = {"vaelab-train": "train", "vaelab-eval": "eval", "vaelab-viz": "viz",
            "vaelab-attr": "attr", "vaelab-explore": "explore"}
#: flags that are not overrides
FLAGS = {"-m", "--multirun", "--cfg", "job", "--resolve", "--help"}


def readme_commands() -> list[tuple[str, list[str]]]:
    """(config name, overrides) of each vaelab command line in the README's bash blocks."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"<[^<>\n]*>", "X", line)  # a placeholder: <run>, <checkpoint>, ...
            words = shlex.split(line, comments=True)
            if words and words[0] in COMMANDS:
                found.append((COMMANDS[words[0]], [w for w in words[1:] if w not in FLAGS]))
    return found


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (a,b,c) replaced by its first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override() else o.input_line for o in parsed]


COMMAND_LINES = readme_commands()


def test_the_readme_shows_commands_of_every_kind():
    assert len(COMMAND_LINES) > 50
    assert {name for name, _ in COMMAND_LINES} >= {"train", "eval", "viz", "attr"}


@pytest.mark.parametrize("name, overrides", COMMAND_LINES,
                         ids=[" ".join([n, *o])[:90] for n, o in COMMAND_LINES])
def test_every_readme_command_composes_and_resolves(name, overrides, tmp_path):
    if not (Path(__file__).parents[1] / "conf" / f"{name}.yaml").is_file():
        pytest.fail(f"the README shows vaelab-{name}, which has no conf/{name}.yaml")
    cfg = compose_config(name, first_of_sweeps(overrides), tmp_path)
    OmegaConf.to_container(task_config(cfg), resolve=True, throw_on_missing=False)
