"""Shared fixtures: configs composed like the command line, and tiny datasets in real formats."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from vaelab.configs import compose_config

# Quiet and offline by default, whatever the developer's shell has set.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Tiny models on a shared 2-core machine: extra threads only contend (3x slower under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

def run_if(min_gpus: int = 0, bf16: bool = False) -> list[pytest.MarkDecorator]:
    """Marks that skip a test unless the machine has `min_gpus` CUDA GPUs (and bf16 on them);
    GPU tests also carry the `gpu` marker (pytest -m gpu runs only them)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    reasons = []
    if gpus < min_gpus:
        reasons.append(f"needs {min_gpus} CUDA GPU(s), found {gpus}")
    elif bf16 and not torch.cuda.is_bf16_supported():
        reasons.append("needs a GPU with bfloat16")
    marks = [pytest.mark.skipif(bool(reasons), reason="; ".join(reasons))]
    return marks + ([pytest.mark.gpu] if min_gpus else [])


FAST = [
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.progress=null",
    "callbacks.model_summary=null",
]


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(overrides, name="train") -> a composed config writing under tmp_path/run."""

    def _make(overrides: list[str] = (), name: str = "train",
              output_dir: Path | None = None) -> DictConfig:
        fast = FAST if name == "train" else FAST[:2]
        return compose_config(name, [*fast, *overrides], output_dir or tmp_path / "run")

    return _make


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST uses (magic 0x0000080N, big-endian dims)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """A tiny MNIST in torchvision's layout: root/MNIST/raw/*-ubyte; digit d is a bright band."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, d in enumerate(labels):
            images[i, 2 + 2 * d: 6 + 2 * d, 4:24] = 250
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    return make_mnist(tmp_path / "data")


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def write_celeba(root: Path, images: np.ndarray, attributes: np.ndarray, partition: np.ndarray,
                 layout: str = "official", identity: np.ndarray | None = None) -> Path:
    """CelebA's folder from uint8 [N, H, W, 3] faces, {0,1} [N, 40] attributes, partition [N].

    layout "official": img_align_celeba/*.jpg + list_*.txt (attributes as -1/1, with the count
    and header lines); "kaggle": img_align_celeba/img_align_celeba/*.jpg + list_*.csv.
    """
    kaggle = layout == "kaggle"
    image_dir = root / "img_align_celeba" / ("img_align_celeba" if kaggle else "")
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(images))]
    for name, image in zip(names, images, strict=True):
        Image.fromarray(image).save(image_dir / name, quality=95)
    signs = np.where(attributes > 0, 1, -1)
    if kaggle:
        attr_lines = [",".join(["image_id", *CELEBA_ATTRIBUTES])]
        attr_lines += [",".join([n, *map(str, s)]) for n, s in zip(names, signs, strict=True)]
        (root / "list_attr_celeba.csv").write_text("\n".join(attr_lines) + "\n")
        pairs = zip(names, partition, strict=True)
        part_lines = ["image_id,partition", *(f"{n},{p}" for n, p in pairs)]
        (root / "list_eval_partition.csv").write_text("\n".join(part_lines) + "\n")
    else:
        attr_lines = [str(len(names)), " ".join(CELEBA_ATTRIBUTES)]
        attr_lines += [f"{n} " + " ".join(f"{v:2d}" for v in s)
                       for n, s in zip(names, signs, strict=True)]
        (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
        part_lines = [f"{n} {p}" for n, p in zip(names, partition, strict=True)]
        (root / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
        if identity is not None:
            (root / "identity_CelebA.txt").write_text(
                "".join(f"{n} {i}\n" for n, i in zip(names, identity, strict=True)))
    return root

def run_command(cwd: Path, args: list[str], expect_ok: bool = True, timeout: float = 300,
                module: bool = True, wait: bool = True, split_stderr: bool = False):
    """`python -m <args[0]> <args[1:]>` (or `python <args>` with module=False) in cwd, its
    stdout a pipe (as under SLURM or nohup); returns the output (stdout and stderr; with
    split_stderr, the pair (stdout, stderr)), or the Popen with wait=False. expect_ok=False
    expects a non-zero exit."""
    cmd = [sys.executable, *(["-m"] if module else []), *args]
    # its own process group, so a hung run's DDP ranks can be killed with it
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
                            text=True, start_new_session=True)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert (proc.returncode == 0) == expect_ok, \
        f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}{(err or '')[-3000:]}"
    return (out, err) if split_stderr else out


@pytest.fixture
def train_cli(tmp_path):
    """train_cli(args) runs `python -m vaelab train *args` in tmp_path (outputs/ lands there),
    without progress bars, and returns its output; wait=False returns the Popen instead, and
    expect_ok=False expects a non-zero exit (a sweep with a failed job)."""

    def _run(args: list[str], wait: bool = True, timeout: float = 120, expect_ok: bool = True):
        flags = [a for a in args if a.startswith("-")]  # e.g. -m, before the overrides
        overrides = [a for a in args if not a.startswith("-")]
        return run_command(tmp_path, ["vaelab", "train", *flags, "callbacks.progress=null",
                                      "callbacks.model_summary=null",
                                      "trainer.enable_progress_bar=false", *overrides],
                           expect_ok=expect_ok, timeout=timeout, wait=wait)

    return _run


@pytest.fixture
def decoded_files(monkeypatch) -> list[str]:
    """The names of the image files decoded while the test runs (each decode appends one)."""
    from vaelab.data.image_files import ImagePreprocess

    decoded = []
    real = ImagePreprocess.__call__

    def counting(self, path):
        decoded.append(path.name)
        return real(self, path)

    monkeypatch.setattr(ImagePreprocess, "__call__", counting)
    return decoded
