"""scripts/bench_train.py runs both sides, prints their ratio, and profiles vaelab's steps."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[1] / "scripts" / "bench_train.py"


def test_bench_train_reports_ratios_and_a_profile_by_part_of_the_stack(mnist_root):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--experiments", "mnist_2d", "--steps", "3", "--warmup",
         "2", "--repeats", "1", "--profile", "--top", "5",
         "--override", "data.val_size=20", "data.batch_size=8", "logger=none"],
        capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "VAELAB_DATA_DIR": str(mnist_root)},
    ).stdout
    assert re.search(r"^mnist_2d +\d+ +\d+ +\d\.\d{3} +\d+ +\d+ +\d\.\d{3}$", out, re.M), out
    parts = dict(re.findall(r"^  (\w[\w ()]*?) +(\d+\.\d+) ms +\d+\.\d %$", out, re.M))
    assert {"vaelab", "Lightning", "torch kernels"} <= set(parts), out
    assert "load average" in out and len(re.findall(r"^ +\d+\.\d{3} +\d+\.\d  \[", out, re.M)) == 5
