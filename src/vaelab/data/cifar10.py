"""CIFAR-10 from torchvision's layout, <data_dir>/cifar-10-batches-py/, held in memory as uint8.

The batch files are Python pickles. They are read with an unpickler that can build only dicts,
lists, strings, numbers and numpy arrays, so a crafted file cannot run code (plain
`pickle.load`, which torchvision.datasets.CIFAR10 uses, runs whatever a file asks for).
"""

import importlib
import io
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import download_and_extract_archive

from vaelab.data.in_memory import OfficialSplitDataModule

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)


def _numpy_reconstruct():
    """numpy's array-unpickling helper (numpy._core since numpy 2, numpy.core before)."""
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")._reconstruct


#: The dtypes a CIFAR batch's arrays may have (never objects, whose pickles can hold anything).
SAFE_DTYPES = frozenset(np.dtype(t) for t in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8",
                                               "f4", "f8", "b1"))


def _empty_array(subtype, shape, dtype):
    """numpy's array-unpickling helper, for the empty array that a pickled array starts from
    (its data follows in the file, so no array grows beyond the file's size; a crafted
    `_reconstruct(ndarray, (3e9,), ...)` would allocate gigabytes from a few bytes)."""
    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise ForbiddenPickleError(f"for a numpy array of shape {tuple(shape)} allocated "
                                   "before its data")
    return _numpy_reconstruct()(subtype, shape, dtype)


def _plain_dtype(*args):
    """np.dtype, for the plain numeric dtypes only (SAFE_DTYPES)."""
    dtype = np.dtype(*args)
    if dtype not in SAFE_DTYPES:
        raise ForbiddenPickleError(f"for numpy dtype {dtype}")
    return dtype


#: Every global a CIFAR batch pickle refers to (numpy arrays, as numpy 1 or 2 name them).
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
}


class CIFARFormatError(ValueError):
    """A CIFAR-10 file that is corrupt, not a CIFAR-10 batch, or asks to run code."""


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle that refers to something a CIFAR-10 batch never holds."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only containers, strings, numbers and numpy arrays (ALLOWED_GLOBALS)."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(f"to import {module}.{name}") from None


def cifar_dir(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / CIFAR10.base_folder


def _fix(folder: Path) -> str:
    return (f"Delete it and set data.download=true, or extract a good copy of "
            f"{CIFAR10.url} into {folder.parent}.")


def read_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys, read without running any code."""
    try:
        with open(path, "rb") as f:
            entry = RestrictedUnpickler(f, encoding="latin1").load()
    except ForbiddenPickleError as err:
        raise CIFARFormatError(
            f"{path} was not loaded: it asks {err}, which a CIFAR-10 batch never holds, "
            f"so it may be crafted to run code or exhaust memory. {_fix(path.parent)}") from None
    # A damaged pickle fails in many ways (UnpicklingError, EOFError, ValueError, KeyError, ...).
    except Exception as err:
        raise CIFARFormatError(f"{path} is not a readable pickle ({type(err).__name__}: {err}): "
                               f"it is truncated or corrupt. {_fix(path.parent)}") from err
    if not isinstance(entry, dict):
        raise CIFARFormatError(f"{path} holds a {type(entry).__name__}, not a CIFAR-10 dict. "
                               f"{_fix(path.parent)}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file: (uint8 images [N, 3, 32, 32], int64 labels [N] in 0..9)."""
    entry = read_pickle(path)
    data, labels = entry.get("data"), entry.get("labels", [])
    pixels = int(np.prod(IMAGE_SHAPE))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == pixels):
        found = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise CIFARFormatError(f"{path}: 'data' should be uint8 [N, {pixels}] but is {found}. "
                               f"{_fix(path.parent)}")
    labels = class_ids(labels, len(data))
    if labels is None:
        raise CIFARFormatError(f"{path}: 'labels' should be {len(data)} class ids in 0..9. "
                               f"{_fix(path.parent)}")
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each a row-major 32x32 plane.
    return (torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE)),
            torch.from_numpy(labels.astype(np.int64)))


def class_ids(labels, n: int) -> np.ndarray | None:
    """int64 [n] from a list of n ints in 0..9 (or such an array); None for anything else.
    The type of each entry is checked first: np.asarray would walk a list of nested list
    references (a few bytes of pickle) through billions of elements."""
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and labels.dtype.kind in "iu"
    else:
        ok = isinstance(labels, list) and all(type(v) is int for v in labels)
    if not ok or len(labels) != n:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    return labels if not len(labels) or 0 <= labels.min() <= labels.max() <= 9 else None


def read_class_names(path: Path) -> list[str]:
    names = read_pickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise CIFARFormatError(f"{path}: 'label_names' should list the 10 class names. "
                               f"{_fix(path.parent)}")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def check_files(data_dir: str | Path) -> Path:
    """The batch folder; FileNotFoundError naming what is missing and how to get it."""
    folder = cifar_dir(data_dir)
    missing = [n for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / n).is_file()]
    if missing:
        archive = folder.parent / CIFAR10.filename
        hint = (f"{archive} is there: extract it (tar xzf) or set data.download=true"
                if archive.is_file() else
                f"set data.download=true to fetch {CIFAR10.url} with torchvision, or extract "
                f"that archive into {folder.parent}; data.data_dir (or VAELAB_DATA_DIR) is the "
                f"folder that holds {CIFAR10.base_folder}/")
        raise FileNotFoundError(f"CIFAR-10 files missing in {folder}: {', '.join(missing)}. "
                                f"{hint[0].upper()}{hint[1:]}.")
    return folder


def download(data_dir: str | Path) -> None:
    """Fetch and extract CIFAR-10 with torchvision's downloader (its URL and MD5 checksum)."""
    root = Path(data_dir).expanduser()
    try:
        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename,
                                     md5=CIFAR10.tgz_md5)
    except Exception as err:  # URLError/OSError offline, RuntimeError on a bad checksum
        raise RuntimeError(
            f"downloading CIFAR-10 into {root} failed ({err}). Without network access, copy "
            f"{CIFAR10.filename} there and extract it, and set data.download=false.") from err


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str` (BINSTRING opcodes), as the real CIFAR files hold them, so
    they read back as bytes with encoding="bytes" (the CIFAR website's loader) and as str with
    "latin1" (torchvision's)."""

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def cifar_file_bytes(entry: dict) -> bytes:
    """A CIFAR-10 batch or meta file's bytes, written as the real ones are (for making data sets
    in CIFAR-10's format: scripts/make_cifar_like.py, the tests)."""
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(entry)
    return out.getvalue()


class CIFAR10DataModule(OfficialSplitDataModule):
    """CIFAR-10: a seeded val split of the 50k training images and the official 10k test."""

    title = "CIFAR-10"

    def __init__(self, data_dir: str, image_shape: Sequence[int] = IMAGE_SHAPE, **kwargs):
        super().__init__(data_dir, image_shape, **kwargs)
        self._class_names: list[str] = []

    def files_present(self) -> bool:
        try:
            check_files(self.data_dir)
        except FileNotFoundError:
            return False
        return True

    def fetch(self) -> None:
        download(self.data_dir)

    def read_train_test(self):
        folder = check_files(self.data_dir)
        batches = [read_batch(folder / name) for name in TRAIN_FILES]
        self._class_names = read_class_names(folder / META_FILE)
        return ((torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])),
                read_batch(folder / TEST_FILE))

    @property
    def class_names(self) -> list[str]:
        """airplane, automobile, ... in label order, from batches.meta."""
        self.setup()
        return list(self._class_names)
