"""The commands themselves: help that says what each does, config-only commands that do not load
torch, the resolved config, and a machine's own conf/local/default.yaml."""

import pytest
import yaml

from helpers.commands import run_command
from vaelab.configs import compose_config

pytestmark = pytest.mark.integration

COMMANDS = {
    "train": "vaelab-train: train a VAE",
    "evaluate": "vaelab-eval: every test metric of a trained run",
    "viz": "vaelab-viz: draw the latent-space figures",
    "attr": "vaelab-attr: a latent attribute vector",
    "explore": "vaelab-explore: the latent space of a trained run, live in the browser",
}


def cli(tmp_path, command: str, *args: str, expect_ok: bool = True) -> str:
    code = (f"import sys; sys.argv = ['vaelab', *{list(args)!r}]; "
            f"from vaelab.cli import {command}; {command}()")
    return run_command(tmp_path, ["-c", code], module=False, expect_ok=expect_ok)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_starts_with_what_the_command_does(tmp_path, command):
    out = cli(tmp_path, command, "--help")
    assert out.startswith(COMMANDS[command])
    if command != "train":
        assert "Required:" in out and "ckpt_path=" in out
        assert "hparams_search" not in out and "model/kl_schedule" not in out  # training only


def test_report_help_says_what_it_does_in_full_sentences(tmp_path):
    out = cli(tmp_path, "report", "--help")
    assert "Summarise a sweep" in out and "never-run jobs are listed, not lost." in out


def test_config_only_commands_do_not_import_torch(tmp_path):
    code = ("import sys; sys.argv = ['vaelab-train', '--cfg', 'job']; "
            "from vaelab.cli import train; train(); "
            "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]; "
            "print('imported:', heavy)")
    out = run_command(tmp_path, ["-c", code], module=False)
    assert "imported: []" in out and "task_name: train" in out


def test_the_resolved_config_prints_with_the_data_folder(tmp_path):
    out = cli(tmp_path, "train", "--cfg", "job", "--resolve", "data=mnist",
              "paths.data_dir=/somewhere/data")
    cfg = yaml.safe_load(out)
    assert cfg["data"]["data_dir"] == "/somewhere/data"
    assert cfg["model"]["decoder"]["out_channels"] == 1  # resolvers ran


def test_a_local_config_written_naturally_sets_top_level_keys(tmp_path):
    local = tmp_path / "extra" / "local"
    local.mkdir(parents=True)
    (local / "default.yaml").write_text("paths:\n  data_dir: /my/datasets\ntags: [laptop]\n")
    cfg = compose_config("train", [f"hydra.searchpath=[file://{tmp_path / 'extra'}]"], tmp_path)
    assert cfg.paths.data_dir == "/my/datasets" and list(cfg.tags) == ["laptop"]
    assert "local" not in cfg


@pytest.mark.parametrize("command, args, key", [
    ("evaluate", [], "ckpt_path="),
    ("viz", [], "ckpt_path="),
    ("attr", ["ckpt_path=x.ckpt"], "attribute="),
])
def test_a_command_without_its_required_options_says_so_in_one_line_and_writes_nothing(
        tmp_path, command, args, key):
    """Issue 22 items 11 and 18: vaelab-eval printed 134 lines of Hydra's traceback; refused
    commands left run folders behind."""
    out = cli(tmp_path, command, *args, expect_ok=False)
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and key in errors[0], out
    assert "Traceback" not in out
    left = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file() or not any(p.iterdir())]
    assert not [p for p in left if "runs/" in str(p.relative_to(tmp_path))], left


def test_a_mistyped_checkpoint_makes_no_evaluation_folder_beside_it(tmp_path):
    typo = tmp_path / "runs" / "typo" / "checkpoints" / "last.ckpt"
    cfg = compose_config("eval", [f"ckpt_path={typo}"], tmp_path / "out")
    assert cfg.hydra.run.dir.startswith("./outputs/eval/runs/")  # not runs/typo/eval/


@pytest.mark.slow  # 13-21 s: kept out of the default run's 15 minutes
def test_ddp_ranks_that_lightning_launched_report_an_error_in_one_line_each(tmp_path):
    """Issue 21 item 10: the ranks Lightning started printed full tracebacks."""
    out = run_command(tmp_path, ["vaelab", "train", "trainer=ddp_sim", "data.batch_size=63",
                                 "callbacks.progress=null", "logger=none"], expect_ok=False,
                      timeout=300)
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "must divide evenly over 2 devices" in line]
    assert any("[rank 1]" in line for line in lines), out[-3000:]
