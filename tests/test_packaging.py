"""A wheel (what a plain `pip install .` installs) carries conf/ and finds it."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_configs_and_an_install_from_it_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(REPO)], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("vaelab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "vaelab/conf/train.yaml" in names and "vaelab/conf/data/mnist.yaml" in names
    # vaelab-explore's page: its static files travel inside the package
    assert {f"vaelab/explore/static/{f}" for f in ("index.html", "explore.js", "explore.css")} \
        <= set(names) and "vaelab/conf/explore.yaml" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    code = ("import vaelab, vaelab.configs as c; print(vaelab.__file__); print(c.CONFIG_DIR); "
            "cfg = c.compose_config('train', ['data=mnist'], 'out'); print(cfg.data._target_)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)}).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1] == str(site / "vaelab" / "conf")
    assert out[2] == "vaelab.data.MNISTDataModule"
