"""DeepMind's 3dshapes (3dshapes.h5), or any HDF5 file in its format: datasets `images` uint8
[N, H, W, 3] and `labels` float64 [N, 6] holding each image's factor values.

The images are read in chunks, turned channels-first, and cached as a memory-mapped uint8 .npy
[N, 3, H, W] (5.9 GB for the full file), so later runs start without touching the HDF5 images.
"""


import h5py
import numpy as np
import torch
from rich.progress import track

from vaelab.data.cache import CacheWriteError, cached_array, source_fingerprint
from vaelab.data.factors import FactorData, FactorFileDataModule, FactorFileError, factor_names_for

FILE_NAME = "3dshapes.h5"
FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
#: Bumped whenever the cached images would come out differently from the same file.
CACHE_FORMAT = 1
#: images read from the HDF5 file at a time while the cache is built (98 MB at 64x64)
CHUNK = 8192

WHERE_TO_GET = (
    f"Download {FILE_NAME} from https://github.com/deepmind/3d-shapes (gs://3d-shapes/3dshapes.h5,"
    " e.g. `gsutil cp gs://3d-shapes/3dshapes.h5 <data_dir>/`) into data.data_dir (or "
    "VAELAB_DATA_DIR), or name another file in the same format with data.file_name. "
    "data=sprites renders dSprites-like data itself and needs no download."
)


def factor_classes(values: np.ndarray) -> np.ndarray:
    """int64 [N, K]: each column's sorted distinct values numbered 0..n-1."""
    columns = [np.unique(values[:, k], return_inverse=True)[1] for k in range(values.shape[1])]
    return np.stack(columns, axis=1).astype(np.int64)


def copy_images_chw(images: h5py.Dataset, out: np.ndarray) -> None:
    """Copy HDF5 images [N, H, W, C] into out [N, C, H, W], CHUNK images at a time."""
    n = len(images)
    for start in track(range(0, n, CHUNK), description=f"caching 3dshapes ({n} images)"):
        out[start:start + CHUNK] = images[start:start + CHUNK].transpose(0, 3, 1, 2)


def check_stored_inside(path, *datasets: h5py.Dataset) -> None:
    """Refuse datasets whose data lives outside the file: HDF5 external storage or virtual
    datasets can point at any file on the machine (/etc/passwd would land in the cache)."""
    for dataset in datasets:
        if dataset.external or dataset.is_virtual:
            raise FactorFileError(f"{path}: its {dataset.name.lstrip('/')} dataset keeps its "
                                  "data in other files (HDF5 external storage or a virtual "
                                  f"dataset), which vaelab does not read. {WHERE_TO_GET}")


class Shapes3DDataModule(FactorFileDataModule):
    """3dshapes from `<data_dir>/<file_name>`: images uint8 [N, 3, 64, 64], labels the classes
    [N, K] of floor_hue, wall_hue, object_hue, scale, shape, orientation (those that vary)."""

    def __init__(self, data_dir: str, file_name: str = FILE_NAME, **kwargs):
        super().__init__(data_dir, file_name, **kwargs)

    @classmethod
    def expected_factor_sizes(cls, options: dict) -> dict[str, int]:
        """The official file's factors (a subsampled file is checked when it is read)."""
        return dict(zip(FACTORS, [10, 10, 10, 8, 4, 15]))

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """(cached uint8 images [N, C, H, W], int64 factor classes [N, K])."""
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"the 3dshapes file {path} does not exist. {WHERE_TO_GET}")
        try:
            with h5py.File(path, "r") as file:
                images = file["images"]
                check_stored_inside(path, file["images"], file["labels"])
                values = file["labels"][()]
                if not (np.issubdtype(values.dtype, np.number) and np.isfinite(values).all()):
                    raise FactorFileError(f"{path}: labels must be finite numbers (each image's "
                                          f"factor values), got {values.dtype} with values that "
                                          f"are not. {WHERE_TO_GET}")
                if (images.ndim != 4 or images.dtype != np.uint8 or values.ndim != 2
                        or len(values) != len(images)):
                    raise FactorFileError(
                        f"{path}: expected images uint8 [N, H, W, C] and labels [N, K], got "
                        f"images {images.dtype} {images.shape} and labels {values.shape}. "
                        f"{WHERE_TO_GET}")
                n, h, w, c = images.shape
                cached = cached_array(self.cache_path, {"format": CACHE_FORMAT}, (n, c, h, w),
                                      lambda out: copy_images_chw(images, out), "3dshapes",
                                      source=source_fingerprint([path], path.parent)).array
        except CacheWriteError:  # the cache folder's, already explained
            raise
        except (OSError, KeyError) as err:  # h5py: not HDF5, truncated, or a dataset missing
            raise FactorFileError(f"{path} is not a readable 3dshapes HDF5 file with datasets "
                                  f"'images' and 'labels' ({err}). {WHERE_TO_GET}") from err
        return cached, factor_classes(values)

    def prepare_data(self) -> None:
        # One process per node builds the cache, so DDP ranks never write it together.
        self._read()

    def load_factor_data(self) -> FactorData:
        images, classes = self._read()
        return FactorData(torch.from_numpy(images), torch.from_numpy(classes),
                          factor_names_for(FACTORS, classes.shape[1]))
