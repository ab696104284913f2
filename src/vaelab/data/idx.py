"""Reader for MNIST's IDX files, with errors that say what is wrong and what to do."""

import gzip
from pathlib import Path

import numpy as np
import torch

# Third byte of the magic number: the element type; 0x08 is unsigned byte.
_UBYTE = 0x08


class IDXFormatError(ValueError):
    """An IDX file that is truncated, has the wrong magic number or the wrong shape."""


def read_idx(path: Path, expected_ndim: int, fix: str) -> torch.Tensor:
    """Read an uncompressed or .gz IDX file of unsigned bytes into a uint8 tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise IDXFormatError(f"{path} is truncated ({len(data)} bytes, no IDX header). {fix}")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (_UBYTE << 8) | expected_ndim
    if zero != 0 or dtype != _UBYTE or ndim != expected_ndim:
        raise IDXFormatError(
            f"{path} has magic number {magic} but an IDX file of unsigned bytes with "
            f"{expected_ndim} dimensions has {expected_magic}: it is not the file expected. {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path} is truncated inside its header. {fix}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header + int(np.prod(shape))
    if len(data) != expected_bytes:
        raise IDXFormatError(
            f"{path} holds {len(data)} bytes but its header promises {expected_bytes} "
            f"(shape {shape}): the file is truncated or corrupt. {fix}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())
