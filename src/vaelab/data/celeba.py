"""CelebA (aligned faces) from the official or the Kaggle folder layout, held in memory as uint8.

Images are center-cropped and resized once; with `cache=true` the result is kept per split as a
memory-mapped .npy file beside a JSON manifest (written last) that says what it was built from.
"""

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from rich.progress import track

from vaelab.data.in_memory import InMemoryDataModule

SPLITS = {"train": 0, "val": 1, "test": 2}
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
#: Bumped whenever the cached arrays would come out differently for the same parameters.
CACHE_FORMAT = 1

WHERE_TO_GET = (
    "Get CelebA's 'Align&Cropped' images and annotation files from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or the Kaggle copy "
    "'jessicali9530/celeba-dataset', or torchvision.datasets.CelebA(root, download=True)) and lay "
    "them out as <data_dir>/img_align_celeba/*.jpg, <data_dir>/list_attr_celeba.txt and "
    "<data_dir>/list_eval_partition.txt (Kaggle's .csv files and its nested "
    "img_align_celeba/img_align_celeba/ folder work too); see README 'CelebA'."
)


class CelebAFolderError(FileNotFoundError):
    """The CelebA folder lacks files, or its lists name images that are not there."""


@dataclass(frozen=True)
class CelebAFiles:
    """Where each part of one CelebA copy lives."""

    root: Path
    images: Path
    attributes: Path
    partition: Path
    identity: Path | None


def celeba_root(data_dir: str | Path) -> Path:
    """`<data_dir>/celeba` (torchvision's download layout) when it exists, else `data_dir`."""
    data_dir = Path(data_dir).expanduser()
    nested = data_dir / "celeba"
    return nested if nested.is_dir() else data_dir


def _first_file(root: Path, stem: str) -> Path | None:
    for suffix in (".txt", ".csv"):
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def find_celeba(data_dir: str | Path) -> CelebAFiles:
    """Locate images and list files; raises CelebAFolderError naming everything missing."""
    root = celeba_root(data_dir)
    images = root / "img_align_celeba"
    if (images / "img_align_celeba").is_dir():  # Kaggle's archive nests the folder in itself
        images = images / "img_align_celeba"
    attributes = _first_file(root, "list_attr_celeba")
    partition = _first_file(root, "list_eval_partition")
    missing = []
    if not images.is_dir():
        missing.append("img_align_celeba/ (the folder of aligned .jpg faces)")
    if attributes is None:
        missing.append("list_attr_celeba.txt (or list_attr_celeba.csv)")
    if partition is None:
        missing.append("list_eval_partition.txt (or list_eval_partition.csv)")
    if missing:
        where = f"{root}" if root.is_dir() else f"{root}, which does not exist"
        raise CelebAFolderError(
            f"CelebA is incomplete in {where}: missing {'; '.join(missing)}. {WHERE_TO_GET} "
            "Point data.data_dir (or VAELAB_DATA_DIR) at that folder."
        )
    return CelebAFiles(root, images, attributes, partition,
                       _first_file(root, "identity_CelebA"))


def _is_int(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def read_list(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(header, image names, int64 [N, K]) of a CelebA list: official .txt or Kaggle .csv.

    The header is the column names after the image column (Kaggle's first line; the official
    attribute file's second line, after the image count); it is empty for headerless lists.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    header: list[str] = []
    if path.suffix == ".csv":
        header = [h.strip() for h in lines[0].split(",")[1:]] if lines else []
        lines = [line.replace(",", " ") for line in lines[1:]]
    else:
        if lines and _is_int(lines[0].strip()):
            lines = lines[1:]  # the official attribute file's image count
        first = lines[0].split() if lines else []
        if first and not (len(first) > 1 and _is_int(first[1])):
            header, lines = first, lines[1:]  # a line of column names, not "<image> <value>..."
    pairs = [line.split(None, 1) for line in lines]
    width = len(header) or (len(pairs[0][1].split()) if pairs and len(pairs[0]) == 2 else 1)
    # One C-level parse of all values: Python int() per token takes seconds on 8M of them.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(" ".join(p[1] for p in pairs if len(p) == 2), dtype=np.int64,
                                   sep=" ")
        except (ValueError, DeprecationWarning):
            values = np.empty(0, dtype=np.int64)
    if values.size != len(pairs) * width:
        bad = next((p[0] for p in pairs if len(p) != 2 or len(p[1].split()) != width), "?")
        raise ValueError(
            f"{path} is corrupt: every line should be an image name and {width} integers, but "
            f"the line of {bad} is not. {WHERE_TO_GET}"
        )
    return header, [p[0] for p in pairs], values.reshape(len(pairs), width)


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, image names, uint8 [N, A] in {0, 1}) from list_attr_celeba.{txt,csv}."""
    names, images, values = read_list(path)
    if not names:
        raise ValueError(f"{path} has no line of attribute names: the file is corrupt or "
                         f"truncated. {WHERE_TO_GET}")
    return names, images, (values > 0).astype(np.uint8)


def read_name_column(path: Path) -> dict[str, int]:
    """{image name: integer} from list_eval_partition or identity_CelebA (.txt or .csv)."""
    _, images, values = read_list(path)
    return dict(zip(images, values[:, 0].tolist()))


def center_crop_resize(path: Path, crop: tuple[int, int] | None, size: tuple[int, int],
                       resample: str) -> np.ndarray:
    """One face as uint8 [C=3, H, W]: the central crop (h, w), resized to size (h, w)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except OSError as err:  # PIL's UnidentifiedImageError and truncated-file errors
        raise CelebAFolderError(f"{path} is not a readable image ({err}): the file is corrupt. "
                                "Unpack img_align_celeba again.") from err
    if crop is not None:
        w, h = image.size
        if crop[0] > h or crop[1] > w:
            raise ValueError(
                f"{path} is {h}x{w}, smaller than data.crop_size={list(crop)}: lower the crop "
                "(CelebA's aligned images are 218x178)"
            )
        top, left = round((h - crop[0]) / 2), round((w - crop[1]) / 2)
        image = image.crop((left, top, left + crop[1], top + crop[0]))
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), RESAMPLE[resample])
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def source_fingerprint(paths: Sequence[Path]) -> str:
    """Hash of the images' names, sizes and modification times, in order."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class CelebADataModule(InMemoryDataModule):
    """CelebA's official train/val/test partitions; batches are (images, attributes int64 [B, 40]).

    Labels are all 40 binary attributes in the file's column order (`attribute_names`), so
    attribute tools see every column; `class_labels` picks `label_attribute` (0/1) for plots.
    """

    def __init__(self, data_dir: str, image_shape: Sequence[int] = (3, 64, 64),
                 crop_size: int | Sequence[int] | None = 148, resample: str = "bicubic",
                 label_attribute: str = "Male", cache: bool = True, cache_dir: str | None = None,
                 decode_workers: int = 8, num_classes: int = 2, **kwargs):
        super().__init__(image_shape=image_shape, num_classes=num_classes, **kwargs)
        if self.image_shape[0] != 3:
            raise ValueError(f"CelebA images are RGB: data.image_shape must start with 3, got "
                             f"{list(self.image_shape)}")
        if resample not in RESAMPLE:
            raise ValueError(f"data.resample must be one of {sorted(RESAMPLE)}, got {resample!r}")
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        self.crop = tuple(crop_size) if crop_size is not None else None
        self.data_dir = data_dir
        self.resample = resample
        self.label_attribute = label_attribute
        self.cache = cache
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self.attribute_names: list[str] = []
        #: split -> int64 [N] identity ids when identity_CelebA.txt is present, else absent.
        self.identities: dict[str, torch.Tensor] = {}
        self._label_column: int | None = None

    # -- the folder --------------------------------------------------------------------------
    def split_files(self, files: CelebAFiles) -> dict[str, list[str]]:
        """Image names of each official partition, checked against the folder and attributes."""
        partition = read_name_column(files.partition)
        present = set(os.listdir(files.images))
        absent = [name for name in partition if name not in present]
        if absent:
            raise CelebAFolderError(
                f"{files.partition.name} names {len(partition)} images but {len(absent)} of them "
                f"are not in {files.images} (e.g. {', '.join(absent[:5])}): the image folder is "
                f"incomplete or from another copy. Unpack img_align_celeba again. {WHERE_TO_GET}"
            )
        unknown = sorted(set(partition.values()) - set(SPLITS.values()))
        if unknown:
            raise ValueError(f"{files.partition} has partition ids {unknown}; CelebA's are "
                             "0 (train), 1 (val), 2 (test)")
        return {split: [n for n, p in partition.items() if p == pid]
                for split, pid in SPLITS.items()}

    def cache_path(self, files: CelebAFiles, split: str) -> Path:
        """The split's .npy cache; its name carries the preprocessing parameters."""
        default = files.root / "vaelab_cache"
        folder = Path(self.cache_dir).expanduser() if self.cache_dir else default
        _, h, w = self.image_shape
        crop = f"crop{self.crop[0]}x{self.crop[1]}" if self.crop else "nocrop"
        return folder / f"{split}-{h}x{w}-{crop}-{self.resample}.npy"

    def _params(self) -> dict:
        return {"format": CACHE_FORMAT, "image_shape": list(self.image_shape),
                "crop": list(self.crop) if self.crop else None, "resample": self.resample}

    # -- decoding and the cache ------------------------------------------------------------
    def decode(self, paths: list[Path], out: np.ndarray, description: str) -> None:
        """Fill out [N, 3, H, W] with the preprocessed images, threads decoding in parallel."""
        size = tuple(self.image_shape[1:])

        def one(i: int) -> None:
            out[i] = center_crop_resize(paths[i], self.crop, size, self.resample)

        # PIL releases the GIL while decoding and resizing, so threads scale.
        with ThreadPoolExecutor(max(1, self.decode_workers)) as pool:
            for _ in track(pool.map(one, range(len(paths))), total=len(paths),
                           description=description):
                pass

    def cache_problem(self, path: Path, fingerprint: str, n: int) -> str | None:
        """Why the cache at `path` cannot be used, or None when it matches the source."""
        manifest_path = path.with_suffix(".json")
        if not manifest_path.is_file():
            return "no cache yet" if not path.exists() else "an interrupted build (no manifest)"
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            return "its manifest is unreadable"
        if manifest.get("params") != self._params():
            return "it was built with other preprocessing parameters"
        if manifest.get("num_images") != n or manifest.get("source") != fingerprint:
            return "the source images or the partition changed since it was built"
        if not path.is_file() or path.stat().st_size != manifest.get("bytes"):
            return "the array file is missing or has the wrong size"
        return None

    def build_cache(self, path: Path, paths: list[Path], fingerprint: str, split: str) -> None:
        """Write the split's array, then (last) its manifest; a crash leaves no manifest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path = path.with_suffix(".json")
        manifest_path.unlink(missing_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                          shape=(len(paths), *self.image_shape))
        try:
            self.decode(paths, array, f"caching CelebA {split} ({len(paths)} images)")
            array.flush()
            del array
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        manifest = {"params": self._params(), "num_images": len(paths), "source": fingerprint,
                    "bytes": path.stat().st_size, "images_dir": str(paths[0].parent)}
        tmp = manifest_path.with_name(f"{manifest_path.name}.{os.getpid()}.partial")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, manifest_path)

    def _split_images(self, files: CelebAFiles, split: str, names: list[str]) -> np.ndarray:
        """uint8 [N, 3, H, W]: from a valid cache, else decoded (into a new cache if enabled)."""
        paths = [files.images / name for name in names]
        if not paths:
            raise CelebAFolderError(f"{files.partition} puts no image in the {split} split")
        if not self.cache:
            out = np.empty((len(paths), *self.image_shape), dtype=np.uint8)
            self.decode(paths, out, f"decoding CelebA {split} ({len(paths)} images)")
            return out
        path = self.cache_path(files, split)
        fingerprint = source_fingerprint(paths)
        problem = self.cache_problem(path, fingerprint, len(paths))
        if problem is not None:
            rank_zero_info(f"building the CelebA {split} cache {path}: {problem}")
            try:
                self.build_cache(path, paths, fingerprint, split)
            except PermissionError as err:
                raise PermissionError(
                    f"cannot write the CelebA cache {path} ({err}): set data.cache_dir to a "
                    "writable folder, or data.cache=false"
                ) from err
        # Copy-on-write mapping: pages load lazily and nothing can write back to the cache.
        return np.load(path, mmap_mode="c")

    def prepare_data(self) -> None:
        # Runs on one process per node before setup, so DDP ranks never build a cache together.
        if self.cache:
            files = find_celeba(self.data_dir)
            for split, names in self.split_files(files).items():
                self._split_images(files, split, names)

    def load_splits(self):
        files = find_celeba(self.data_dir)
        names, image_names, attributes = read_attributes(files.attributes)
        if self.label_attribute not in names:
            raise ValueError(f"data.label_attribute={self.label_attribute!r} is not a column of "
                             f"{files.attributes}; choose one of {names}")
        self.attribute_names = names
        self._label_column = names.index(self.label_attribute)
        row = {name: i for i, name in enumerate(image_names)}
        identity = read_name_column(files.identity) if files.identity else None
        splits = {}
        for split, split_names in self.split_files(files).items():
            unlabelled = [n for n in split_names if n not in row]
            if unlabelled:
                raise CelebAFolderError(
                    f"{files.attributes} has no row for {len(unlabelled)} {split} images of "
                    f"{files.partition.name} (e.g. {', '.join(unlabelled[:5])}). {WHERE_TO_GET}"
                )
            images = self._split_images(files, split, split_names)
            labels = torch.from_numpy(attributes[[row[n] for n in split_names]]).long()
            splits[split] = (torch.from_numpy(images), labels)
            if identity is not None:
                self.identities[split] = torch.tensor([identity.get(n, -1) for n in split_names])
        rank_zero_info(f"CelebA from {files.root}: "
                       + ", ".join(f"{len(x)} {s}" for s, (x, _) in splits.items()))
        return splits

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The `label_attribute` column (0/1) of attribute labels; [B, 40] -> [B]."""
        if self._label_column is None:
            raise RuntimeError("call setup() first: the attribute columns come from the data")
        return labels[:, self._label_column]
