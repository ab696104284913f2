"""DeepMind's dSprites (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz), or any file in its format
(subsampled or re-rendered): keys `imgs` uint8 [N, H, W] of 0/1 and `latents_classes` [N, K].

The .npz is a zip of .npy files, read member by member with NumPy's .npy reader and pickles
refused. Its `metadata` entry is a pickled dict: unpickling runs whatever code a crafted file
carries, so it is never opened, and the factor names come from a fixed list instead.
The images are streamed out of the archive in chunks into a uint8 0/255 cache [N, 1, H, W]
(3 GB for the full file, memory-mapped), so they are decompressed once and never held twice.
"""

import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import torch
from rich.progress import track

from vaelab.data.cache import cached_array, source_fingerprint
from vaelab.data.factors import FactorData, FactorFileDataModule, FactorFileError, factor_names_for

FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: dSprites' latents_classes columns (the file's metadata says so; it is not read, see above)
FACTORS = ["color", "shape", "scale", "orientation", "posX", "posY"]
SHAPE_NAMES = ["square", "ellipse", "heart"]
#: Bumped whenever the cached images would come out differently from the same file.
CACHE_FORMAT = 1
#: images decompressed at a time while the cache is built (64 MB at 64x64)
CHUNK = 16384

WHERE_TO_GET = (
    f"Download {FILE_NAME} (26 MB) from https://github.com/deepmind/dsprites-dataset into "
    "data.data_dir (or VAELAB_DATA_DIR), or name another file in the same format with "
    "data.file_name. data=sprites renders dSprites-like data itself and needs no download."
)

_BROKEN = (zipfile.BadZipFile, zlib.error, EOFError, ValueError)


def _open_npy(archive: zipfile.ZipFile, path: Path, key: str) -> IO[bytes]:
    """The archive's `<key>.npy` member, open for reading."""
    if f"{key}.npy" not in archive.namelist():
        raise FactorFileError(f"{path} has no array {key!r} (it has "
                              f"{sorted(n.removesuffix('.npy') for n in archive.namelist())}): "
                              f"not a dSprites file. {WHERE_TO_GET}")
    return archive.open(f"{key}.npy")


def _read_header(member: IO[bytes], path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from a C-ordered .npy member's header, leaving it at the first byte."""
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise FactorFileError(f"{path}: imgs is a .npy of version {version}; re-save the file "
                              "with np.savez_compressed")
    shape, fortran_order, dtype = readers[version](member)
    if fortran_order:
        raise FactorFileError(f"{path}: imgs is stored in Fortran order; re-save it with "
                              "np.savez_compressed(..., imgs=np.ascontiguousarray(imgs), ...)")
    return shape, dtype


def read_factor_classes(path: Path) -> np.ndarray:
    """int64 [N, K]: the file's latents_classes."""
    with zipfile.ZipFile(path) as archive, _open_npy(archive, path, "latents_classes") as member:
        classes = np.lib.format.read_array(member, allow_pickle=False)
    if classes.ndim != 2 or not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
        raise FactorFileError(f"{path}: latents_classes must be non-negative integers [N, K], got"
                              f" {classes.dtype} {classes.shape}. {WHERE_TO_GET}")
    return classes.astype(np.int64)


def read_image_shape(path: Path) -> tuple[int, ...]:
    """(N, H, W) of the file's imgs, from its header alone."""
    with zipfile.ZipFile(path) as archive, _open_npy(archive, path, "imgs") as member:
        shape, dtype = _read_header(member, path)
    if len(shape) != 3 or dtype not in (np.dtype(np.uint8), np.dtype(bool)):
        raise FactorFileError(f"{path}: imgs must be uint8 [N, H, W] of 0/1, got {dtype} {shape}."
                              f" {WHERE_TO_GET}")
    return shape


def stream_images(path: Path, out: np.ndarray) -> None:
    """Decompress imgs (0/1) into out uint8 [N, 1, H, W] as 0/255, CHUNK images at a time."""
    n, h, w = out.shape[0], out.shape[2], out.shape[3]
    with zipfile.ZipFile(path) as archive, _open_npy(archive, path, "imgs") as member:
        _read_header(member, path)
        for start in track(range(0, n, CHUNK), description=f"caching dSprites ({n} images)"):
            count = min(CHUNK, n - start)
            raw = member.read(count * h * w)
            if len(raw) != count * h * w:
                raise FactorFileError(f"{path}: imgs ends after {start} images of {n}: the file"
                                      f" is truncated. {WHERE_TO_GET}")
            chunk = np.frombuffer(raw, dtype=np.uint8).reshape(count, 1, h, w)
            if chunk.max() > 1:
                raise FactorFileError(f"{path}: imgs holds values above 1; dSprites pixels are "
                                      f"0/1. {WHERE_TO_GET}")
            np.multiply(chunk, 255, out=out[start:start + count])


class DSpritesDataModule(FactorFileDataModule):
    """dSprites from `<data_dir>/<file_name>`: images uint8 [N, 1, 64, 64] in {0, 255}, labels
    the factor classes [N, K] that vary (colour, constant in dSprites, is dropped)."""

    def __init__(self, data_dir: str, file_name: str = FILE_NAME, **kwargs):
        super().__init__(data_dir, file_name, **kwargs)

    @classmethod
    def expected_factor_sizes(cls, options: dict) -> dict[str, int]:
        """The official file's factors (a subsampled file is checked when it is read)."""
        return dict(zip(FACTORS, [1, 3, 6, 40, 32, 32]))

    def _checked_path(self) -> Path:
        if not self.path.is_file():
            raise FileNotFoundError(f"the dSprites file {self.path} does not exist. "
                                    f"{WHERE_TO_GET}")
        return self.path

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """(cached uint8 images [N, 1, H, W], int64 factor classes [N, K])."""
        path = self._checked_path()
        try:
            classes = read_factor_classes(path)
            n, h, w = read_image_shape(path)
            if len(classes) != n:
                raise FactorFileError(f"{path} has {n} imgs but {len(classes)} rows of "
                                      f"latents_classes. {WHERE_TO_GET}")
            images = cached_array(self.cache_path, {"format": CACHE_FORMAT}, (n, 1, h, w),
                                  lambda out: stream_images(path, out), "dSprites",
                                  source=source_fingerprint([path], path.parent)).array
        except FactorFileError:
            raise
        except _BROKEN as err:
            raise FactorFileError(f"{path} is not a readable dSprites .npz ({err}): the file is "
                                  f"corrupt or truncated. {WHERE_TO_GET}") from err
        return images, classes

    def prepare_data(self) -> None:
        # One process per node builds the cache, so DDP ranks never write it together.
        self._read()

    def load_factor_data(self) -> FactorData:
        images, classes = self._read()
        names = factor_names_for(FACTORS, classes.shape[1])
        return FactorData(torch.from_numpy(images), torch.from_numpy(classes), names,
                          {"shape": SHAPE_NAMES} if "shape" in names else {})
