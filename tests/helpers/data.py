"""Tiny data sets in the real formats, written by the tests: MNIST's IDX files, CelebA's folder
and CIFAR-10's python batches."""

from pathlib import Path

import numpy as np
from PIL import Image

from vaelab.data.cifar10 import cifar_file_bytes


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


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR_PER_BATCH = 8
CIFAR_N_TEST = 12


def write_cifar(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's python version, tiny: root/cifar-10-batches-py/{data_batch_1..5, test_batch,
    batches.meta}, dicts pickled as Python 2 wrote the real ones; returns the arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in [*((f"data_batch_{i}", CIFAR_PER_BATCH) for i in range(1, 6)),
                    ("test_batch", CIFAR_N_TEST)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        entry = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(cifar_file_bytes(entry))
        written[name] = (data, labels)
    meta = {b"num_cases_per_batch": CIFAR_PER_BATCH,
            b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(cifar_file_bytes(meta))
    return written
