"""scripts/gpu_check.sh, the prepared GPU check: its dry run (every step on the CPU at toy sizes)
and its refusal of a bad data folder."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.data import make_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
STEPS = ["make_data", "gpu_tests", "bench", "mnist_2d", "cifar10_hvae", "cifar10_hvae_eval"]


def test_a_folder_without_mnist_is_refused_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "MNIST/raw" in done.stderr


@pytest.mark.slow
def test_the_dry_run_runs_every_step_on_the_cpu(tmp_path):
    """About three minutes on a loaded 2-core CPU: each step starts its own Python."""
    data, out = make_mnist(tmp_path / "data"), tmp_path / "out"
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--data-dir", str(data),
                           "--out", str(out), "--python", sys.executable],
                          capture_output=True, text=True, timeout=900)
    summary = (out / "summary.txt").read_text().splitlines()
    assert done.returncode == 0, done.stdout[-3000:]
    assert [line.split(":")[0] for line in summary] == STEPS
    assert all(": exit 0," in line for line in summary), summary
    bench = (out / "bench.log").read_text()
    assert all(f"\n{variant} " in bench for variant in ("vaelab", "eager", "vaelab_compiled"))
    figures = {p.name for p in (out / "cifar10_hvae" / "figures").iterdir()}
    assert figures == {"reconstructions", "prior_samples", "temperature_samples",
                       "layer_samples", "kl_per_layer"}
    assert (out / "cifar10_hvae_eval" / "metrics.json").is_file()
