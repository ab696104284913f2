"""The package's layering (pyproject.toml's [tool.importlinter] contracts), and what importing a
piece of vaelab loads."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_import_contracts_are_kept():
    """lint-imports: commands above run management above the library, no circles, and models,
    nets, metrics, viz and data import neither Hydra nor run management."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache", "--config", "pyproject.toml"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module", ["vaelab", "vaelab.nets"])
def test_the_library_loads_no_hydra(module):
    done = python(f"import sys, {module}; print(sorted(m for m in sys.modules "
                  "if m.split('.')[0] in ('hydra', 'omegaconf')))")
    assert done.returncode == 0, done.stderr
    assert "hydra" not in done.stdout, done.stdout


def test_composing_registers_the_resolvers():
    """Importing vaelab no longer registers them; every process that composes configs imports
    vaelab.configs, which does."""
    done = python("from omegaconf import OmegaConf; import vaelab; "
                  "print(OmegaConf.has_resolver('vaelab.job_dirname')); import vaelab.configs; "
                  "print(OmegaConf.has_resolver('vaelab.job_dirname'))")
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_python_m_vaelab_runs_the_commands():
    done = subprocess.run([sys.executable, "-m", "vaelab", "train", "--cfg", "job"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "latent_dim" in done.stdout
    done = subprocess.run([sys.executable, "-m", "vaelab"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert "python -m vaelab {train,eval,viz,attr,report,explore}" in done.stderr
