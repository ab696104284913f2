"""scripts/bench_train.py runs vaelab, a raw loop and bare Lightning, prints their ratios, and
profiles the steps of vaelab and of bare Lightning."""

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
    # Lightning's floor: its img/s, Lightning/raw, vaelab/Lightning, ms/step over raw of each
    ms = r"(-?\d+\.\d{3})"
    floor = re.search(rf"^mnist_2d +(\d+) +(\d\.\d{{3}}) +(\d\.\d{{3}}) +{ms} +{ms}$", out, re.M)
    assert floor and int(floor[1]) > 0 and float(floor[2]) > 0 and float(floor[3]) > 0, out
    assert re.search(r"repeat 0: vaelab \d+ img/s .* bare Lightning \d+ img/s", out), out
    parts = dict(re.findall(r"^  (\w[\w ()]*?) +(\d+\.\d+) ms +\d+\.\d %$", out, re.M))
    assert {"vaelab", "Lightning", "torch kernels"} <= set(parts), out
    # one profile of vaelab's steps and one of bare Lightning's, each with its top 5 functions
    assert re.findall(r"^mnist_2d, (.+?): own time .* (\d+) function calls per step$", out,
                      re.M)[0][0] == "vaelab", out
    assert len(re.findall(r"function calls per step$", out, re.M)) == 2, out
    assert "load average" in out and len(re.findall(r"^ +\d+\.\d{3} +\d+\.\d  \[", out, re.M)) == 10
