"""MNIST's IDX files read by torchvision's parser, with errors that name the file and the fix.

torchvision's `read_image_file`/`read_label_file` take only an uncompressed path and fail with
bare asserts or reshape errors, so this checks the magic number first, reads `.gz` files
through a temporary copy, and turns each failure into an IDXFormatError.
"""

import gzip
import math
import shutil
import tempfile
import zlib
from pathlib import Path

import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

# Third byte of the magic number: the element type; 0x08 is unsigned byte.
_UBYTE = 0x08
_READERS = {3: read_image_file, 1: read_label_file}


class IDXFormatError(ValueError):
    """An IDX file that is truncated, corrupt, or has the wrong magic number."""


def _check(path: Path, data_path: Path, expected_ndim: int, fix: str) -> None:
    """Raise IDXFormatError unless `data_path` starts with the magic number and a header of
    dimensions that account for every byte of the file."""
    size = data_path.stat().st_size
    with open(data_path, "rb") as f:
        head = f.read(4 + 4 * expected_ndim)
    if len(head) < 4:
        raise IDXFormatError(f"{path} is truncated ({size} bytes, no IDX header). {fix}")
    magic, expected_magic = int.from_bytes(head[:4], "big"), (_UBYTE << 8) | expected_ndim
    if magic != expected_magic:
        raise IDXFormatError(
            f"{path} has magic number {magic} but an IDX file of unsigned bytes with "
            f"{expected_ndim} dimensions has {expected_magic}: it is not the file expected. {fix}")
    if len(head) < 4 + 4 * expected_ndim:
        raise IDXFormatError(f"{path} is truncated inside its header. {fix}")
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_ndim)]
    expected_bytes = len(head) + math.prod(shape)
    if size != expected_bytes:
        raise IDXFormatError(
            f"{path} holds {size} bytes but its header promises {expected_bytes} "
            f"(shape {tuple(shape)}): the file is truncated or corrupt. {fix}")


def read_idx(path: Path, expected_ndim: int, fix: str) -> torch.Tensor:
    """An uncompressed or .gz IDX file of unsigned bytes with `expected_ndim` dimensions:
    uint8 images [N, H, W] (ndim 3) or int64 labels [N] (ndim 1)."""
    if path.suffix != ".gz":
        _check(path, path, expected_ndim, fix)
        return _READERS[expected_ndim](str(path))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / path.stem
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise IDXFormatError(f"{path} is not a complete gzip file ({err}): it is truncated "
                                 f"or corrupt. {fix}") from err
        _check(path, plain, expected_ndim, fix)
        return _READERS[expected_ndim](str(plain))
