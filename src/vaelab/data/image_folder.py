"""Your own folder of images: class folders or none, split folders or seeded fractions.

    <data_dir>/<class>/**/<image>                       labels=folders, seeded splits
    <data_dir>/{train,val,test}/<class>/**/<image>      labels=folders, your splits
    <data_dir>/**/<image>                               labels=none
    <data_dir>/{train,val,test}/**/<image>              labels=none, your splits

Images of any size and colour mode are flattened to grey or RGB, centre-cropped, resized and
kept per split in the shared memory-mapped array cache (vaelab.data.cache, through
vaelab.data.image_decoder).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from vaelab.data.cache import cache_folder
from vaelab.data.image_decoder import LISTED_BAD_FILES, DecodedImages, ImageDecoder
from vaelab.data.image_files import IMAGE_SUFFIXES, ImagePreprocess, list_images, parse_crop
from vaelab.data.in_memory import InMemoryDataModule
from vaelab.data.splits import check_split_size, split_count, stratified_split

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
LABELS = ("folders", "none")
UNLABELLED_CLASS = "all"


class ImageFolderError(FileNotFoundError):
    """The image folder is missing, empty, or laid out in a way the labels cannot come from."""


@dataclass
class FolderSplits:
    """The files of each split found in the folder, their class ids, and the class names."""

    files: dict[str, list[Path]]  # split -> image files (the splits the folder has)
    labels: dict[str, np.ndarray]  # split -> int64 class ids
    class_names: list[str]


def split_folders(root: Path) -> dict[str, Path]:
    """{split: folder} of the train/val/test folders in `root` (val/ may be valid/, validation/)."""
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        present = [root / n for n in names if (root / n).is_dir()]
        if len(present) > 1:
            raise ImageFolderError(f"{root} has {', '.join(p.name + '/' for p in present)}: keep "
                                   f"one {split} folder")
        if present:
            found[split] = present[0]
    return found


def check_has_images(folder: Path, files: list[Path]) -> None:
    if files:
        return
    if not any(folder.iterdir()):
        raise ImageFolderError(f"{folder} is empty: put your images there (any nesting), or point "
                               "data.data_dir at the folder that holds them")
    raise ImageFolderError(
        f"{folder} holds no image files (looked for {', '.join(IMAGE_SUFFIXES)} at any depth; "
        "hidden files are ignored): point data.data_dir at your folder of images")


def class_of(path: Path, folder: Path) -> str | None:
    """The first-level subfolder of `folder` that holds `path`, None for a file directly in it."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else None


def classes_in(folder: Path, files: list[Path]) -> list[str]:
    """Class names (sorted first-level subfolders) of a labels=folders folder."""
    loose = [f for f in files if class_of(f, folder) is None]
    if loose:
        raise ImageFolderError(
            f"{len(loose)} images lie directly in {folder}, outside any class folder (e.g. "
            f"{', '.join(f.name for f in loose[:3])}): with data.labels=folders every image must "
            "be inside a class subfolder; move them into one, or set data.labels=none")
    return sorted({class_of(f, folder) for f in files})


def scan_folder(root: Path, labels: str) -> FolderSplits:
    """Find the images of each split folder (or of `root`) and their classes."""
    if not root.is_dir():
        raise ImageFolderError(f"data.data_dir={root} is not a folder"
                               f"{'' if root.exists() else ' (it does not exist)'}: point "
                               "data.data_dir at your folder of images")
    files = list_images(root)
    check_has_images(root, files)
    folders = split_folders(root)
    if folders:
        outside = [f for f in files if f.relative_to(root).parts[0] not in
                   {p.name for p in folders.values()}]
        if outside:
            raise ImageFolderError(
                f"{root} has split folders ({', '.join(p.name for p in folders.values())}) but "
                f"also {len(outside)} images outside them (e.g. {outside[0]}): move them into a "
                "split folder, or point data.data_dir at a folder without train/val/test "
                "folders for seeded splits")
        if "train" not in folders:
            raise ImageFolderError(f"{root} has {', '.join(p.name for p in folders.values())} "
                                   "but no train/ folder: add one")
    else:
        folders = {"train": root}
    per_split = {split: [f for f in files if f.is_relative_to(folder)]
                 for split, folder in folders.items()}
    for split, folder in folders.items():
        check_has_images(folder, per_split[split])
    if labels == "none":
        return FolderSplits(per_split, {s: np.zeros(len(f), dtype=np.int64)
                                        for s, f in per_split.items()}, [UNLABELLED_CLASS])
    class_names = classes_in(folders["train"], per_split["train"])
    if len(class_names) < 2:
        raise ImageFolderError(
            f"{folders['train']} has one class folder ({class_names[0]}/): data.labels=folders "
            "needs at least two class subfolders; add them, or set data.labels=none for "
            "unlabelled images")
    ids = {name: i for i, name in enumerate(class_names)}
    split_labels = {}
    for split, folder in folders.items():
        names = classes_in(folder, per_split[split])
        unknown = sorted(set(names) - set(ids))
        if unknown:
            raise ImageFolderError(f"{folder} has class folders {unknown} that "
                                   f"{folders['train']} lacks: every class needs training images")
        split_labels[split] = np.array([ids[class_of(f, folder)] for f in per_split[split]],
                                       dtype=np.int64)
    return FolderSplits(per_split, split_labels, class_names)


class ImageFolderDataModule(InMemoryDataModule):
    """A folder of images of any format, size and colour mode; batches are (images, class ids).

    Classes are the first-level subfolders (sorted names -> ids 0, 1, ...; `class_names`) with
    `labels="folders"`, or a single class "all" with `labels="none"`. Splits are the folder's
    train/val/test subfolders; those missing are drawn from train, `val_size` and `test_size`
    images (counts or fractions of train; seeded by `split_seed`, stratified by class).
    """

    def __init__(self, data_dir: str, labels: str = "folders",
                 image_shape: Sequence[int] = (3, 64, 64),
                 crop_size: int | Sequence[int] | str | None = "square",
                 resample: str = "bicubic", background: Sequence[int] = (255, 255, 255),
                 val_size: int | float = 0.1, test_size: int | float = 0.1,
                 split_seed: int = 12345,
                 skip_bad_files: bool = False, cache: bool = True, cache_dir: str | None = None,
                 decode_workers: int = 8, **kwargs):
        super().__init__(image_shape=image_shape, num_classes=1, **kwargs)
        if labels not in LABELS:
            raise ValueError(f"data.labels must be one of {LABELS}, got {labels!r}")
        self.data_dir = Path(data_dir).expanduser()
        self.labels_from = labels
        self.preprocess = ImagePreprocess(self.image_shape, parse_crop(crop_size), resample,
                                          tuple(background))
        check_split_size("data.val_size", val_size)
        check_split_size("data.test_size", test_size)
        self.sizes = {"val": val_size, "test": test_size}
        self.split_seed = split_seed
        self.skip_bad_files = skip_bad_files
        self.cache = cache
        self.cache_dir = cache_dir
        self.decode_workers = decode_workers
        self._class_names: list[str] = []
        self._files: dict[str, list[Path]] = {}

    def image_decoder(self) -> ImageDecoder:
        folder = (cache_folder(self.cache_dir, self.data_dir / "vaelab_cache") if self.cache
                  else None)
        fix = ("Delete or replace them, or set data.skip_bad_files=true to leave them out (they "
               "are then listed in a .skipped.txt file beside the cache).")
        split = {"labels": self.labels_from, **self.sizes, "split_seed": self.split_seed}
        return ImageDecoder(self.preprocess, folder, self.decode_workers, self.skip_bad_files,
                            what=f"image folder {self.data_dir.name}", fix=fix,
                            extra_params={"split": split})

    def split_files(self) -> tuple[dict[str, list[Path]], dict[str, np.ndarray], list[str]]:
        """(split -> files, split -> class ids, class names); missing splits drawn from train."""
        found = scan_folder(self.data_dir, self.labels_from)
        files, labels = dict(found.files), dict(found.labels)
        train_files, train_labels = files["train"], labels["train"]
        missing = {s: self.fraction(s, len(train_files)) for s in self.sizes if s not in files}
        if missing:
            parts = stratified_split(train_labels, missing, self.split_seed)
            for split, rows in parts.items():
                if len(rows) == 0:
                    raise ValueError(
                        f"the {split} split of {self.data_dir} would be empty "
                        f"({len(train_files)} images, data.val_size={self.sizes['val']}, "
                        f"data.test_size={self.sizes['test']}): raise data.{split}_size, or "
                        f"add a {split}/ folder")
                files[split] = [train_files[i] for i in rows]
                labels[split] = train_labels[rows]
        return files, labels, found.class_names

    def fraction(self, split: str, n: int) -> float:
        """data.<split>_size as a fraction of the n images it is drawn from (split_count)."""
        size = self.sizes[split]
        if isinstance(size, float):
            return size
        return split_count(size, n, f"data.{split}_size", f"image folder {self.data_dir}") / n

    def prepare_data(self) -> None:
        # One process per node builds the caches before setup, so DDP ranks never race.
        if self.cache:
            self._decoded_splits()

    def _decoded_splits(self):
        files, labels, class_names = self.split_files()
        decoded = self.image_decoder().load_splits(
            {s: files[s] for s in ("train", "val", "test")}, self.data_dir)
        return decoded, files, labels, class_names

    def load_splits(self):
        decoded, files, labels, class_names = self._decoded_splits()
        self._class_names = class_names
        self.num_classes = len(class_names)
        self._files = {split: [files[split][i] for i in d.kept] for split, d in decoded.items()}
        self.report_skipped(decoded)
        splits = {split: (torch.from_numpy(d.images), torch.from_numpy(labels[split][d.kept]))
                  for split, d in decoded.items()}
        rank_zero_info(f"image folder {self.data_dir}: {len(class_names)} classes, "
                       + ", ".join(f"{len(x)} {s}" for s, (x, _) in splits.items()))
        return splits

    def report_skipped(self, decoded: dict[str, DecodedImages]) -> None:
        """One warning with the count of unreadable files left out and where they are listed."""
        skipped = [p for d in decoded.values() for p in d.skipped]
        if not skipped:
            return
        lists = [str(d.skipped_list) for d in decoded.values() if d.skipped_list]
        where = ("listed in " + ", ".join(lists) if lists else
                 "\n  " + "\n  ".join(str(p) for p in skipped[:LISTED_BAD_FILES]))
        rank_zero_warn(f"left out {len(skipped)} unreadable image files of {self.data_dir} "
                       f"(data.skip_bad_files=true), {where}")

    def files(self, split: str) -> list[Path]:
        """The file each image of the split was decoded from, in row order."""
        self._split(split)
        return list(self._files[split])

    @property
    def class_names(self) -> list[str]:
        """The class folders' names in id order, or ["all"] with data.labels=none."""
        self.setup()
        return list(self._class_names)
