"""CelebA (aligned faces) from the official or the Kaggle folder layout, held in memory as uint8.

Images are center-cropped and resized once; with `cache=true` the result is kept per split in
the shared memory-mapped array cache (vaelab.data.cache, through vaelab.data.image_decoder).
"""

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from vaelab.data.cache import cache_folder
from vaelab.data.image_decoder import ImageDecoder, UnreadableImagesError
from vaelab.data.image_files import ImagePreprocess, parse_crop
from vaelab.data.in_memory import InMemoryDataModule

SPLITS = {"train": 0, "val": 1, "test": 2}
WHERE_TO_GET = (
    "Get CelebA's 'Align&Cropped' images and annotation files from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or the Kaggle copy "
    "'jessicali9530/celeba-dataset', or torchvision.datasets.CelebA(root, download=True)) and lay "
    "them out as <data_dir>/img_align_celeba/*.jpg, <data_dir>/list_attr_celeba.txt and "
    "<data_dir>/list_eval_partition.txt (Kaggle's .csv files and its nested "
    "img_align_celeba/img_align_celeba/ folder work too); see README 'CelebA'."
)


#: CelebA's binary attributes per image (list_attr_celeba)
NUM_ATTRIBUTES = 40


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
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (it holds bytes that are not UTF-8): it is "
                         f"corrupt or another kind of file. {WHERE_TO_GET}") from None
    lines = [line for line in text.splitlines() if line.strip()]
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
        bad = next((p for p in pairs if not _row_of_integers(p, width)), ["?"])
        raise ValueError(
            f"{path} is corrupt: every line should be an image name and {width} integers, but "
            f"the line {' '.join(bad)[:80]!r} is not. {WHERE_TO_GET}"
        )
    names = [p[0] for p in pairs]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        twice = next(n for n in names if n in seen or seen.add(n))
        raise ValueError(f"{path} lists {twice} more than once: each image must have one line "
                         f"(which one is right cannot be told). {WHERE_TO_GET}")
    return header, names, values.reshape(len(pairs), width)


def _row_of_integers(pair: list[str], width: int) -> bool:
    """Whether a split line is an image name followed by `width` integers."""
    return len(pair) == 2 and len(tokens := pair[1].split()) == width and all(
        _is_int(t) for t in tokens)


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
        self.preprocess = ImagePreprocess(self.image_shape, parse_crop(crop_size), resample)
        self.data_dir = data_dir
        self.label_attribute = label_attribute
        self.cache = cache
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self._attribute_names: list[str] = []
        #: split -> int64 [N] identity ids when identity_CelebA.txt is present, else absent.
        self.identities: dict[str, torch.Tensor] = {}
        self._label_column: int | None = None

    # -- the folder --------------------------------------------------------------------------
    def split_files(self, files: CelebAFiles) -> dict[str, list[str]]:
        """Image names of each official partition, checked against the folder and attributes."""
        partition = read_name_column(files.partition)
        # regular files only: reading a named pipe called 000001.jpg would block for ever
        present = {entry.name for entry in os.scandir(files.images) if entry.is_file()}
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

    def image_decoder(self, files: CelebAFiles) -> ImageDecoder:
        folder = cache_folder(self.cache_dir, files.root / "vaelab_cache") if self.cache else None
        return ImageDecoder(self.preprocess, folder, self.decode_workers, what="CelebA",
                            fix="Unpack img_align_celeba again.")

    def split_images(self, files: CelebAFiles,
                     names: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """{split: uint8 [N, 3, H, W]} from valid caches, else decoded (into new caches if
        enabled), for the image names of each split."""
        empty = [split for split, split_names in names.items() if not split_names]
        if empty:
            raise CelebAFolderError(f"{files.partition} puts no image in the {empty[0]} split")
        paths = {split: [files.images / n for n in split_names]
                 for split, split_names in names.items()}
        try:
            decoded = self.image_decoder(files).load_splits(paths, files.images)
        except UnreadableImagesError as err:
            raise CelebAFolderError(str(err)) from err
        return {split: d.images for split, d in decoded.items()}

    def prepare_data(self) -> None:
        # Runs on one process per node before setup, so DDP ranks never build a cache together.
        if self.cache:
            files = find_celeba(self.data_dir)
            self.split_images(files, self.split_files(files))

    def load_splits(self):
        files = find_celeba(self.data_dir)
        names, image_names, attributes = read_attributes(files.attributes)
        if self.label_attribute not in names:
            raise ValueError(f"data.label_attribute={self.label_attribute!r} is not a column of "
                             f"{files.attributes}; choose one of {names}")
        self._attribute_names = names
        self._label_column = names.index(self.label_attribute)
        row = {name: i for i, name in enumerate(image_names)}
        identity = read_name_column(files.identity) if files.identity else None
        names_of = self.split_files(files)
        for split, split_names in names_of.items():
            unlabelled = [n for n in split_names if n not in row]
            if unlabelled:
                raise CelebAFolderError(
                    f"{files.attributes} has no row for {len(unlabelled)} {split} images of "
                    f"{files.partition.name} (e.g. {', '.join(unlabelled[:5])}). {WHERE_TO_GET}"
                )
        splits = {}
        for split, images in self.split_images(files, names_of).items():
            split_names = names_of[split]
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

    @property
    def class_names(self) -> list[str]:
        return [f"not {self.label_attribute}", self.label_attribute]

    @property
    def attribute_names(self) -> list[str]:
        return list(self._attribute_names)

    def attribute_rows(self, labels: torch.Tensor) -> torch.Tensor:
        """The 40 attributes in the column order of list_attr_celeba; [B, 40] -> bool [B, 40]."""
        return labels.bool()

    @classmethod
    def condition_size(cls, kind: str, options: dict) -> int:
        return options["num_classes"] if kind == "label" else NUM_ATTRIBUTES
