"""Preprocessed image files kept on disk per split: a memory-mapped uint8 .npy and a manifest.

    <cache dir>/<split>-<tag>-<hash>.npy           uint8 [N, C, H, W], served memory-mapped
    <cache dir>/<split>-<tag>-<hash>.json          manifest, written last
    <cache dir>/<split>-<tag>-<hash>.skipped.txt   files left out (data.skip_bad_files=true)

`<tag>` reads like "64x64-crop148x148-bicubic"; `<hash>` covers every parameter, so each set of
parameters has its own files. A cache is used only if its manifest is there (a build that
stopped early leaves none) and records (1) the same parameters, (2) the same source files, by
relative name, size and modification time, (3) the .npy's size in bytes, and (4) the SHA-256 of
the .npy header and of up to SAMPLED_ROWS evenly spaced rows; else it is rebuilt. A damaged
header is caught by numpy's own checks or by (4). A same-size change inside a row that is not
sampled goes unnoticed: delete the cache folder to force a rebuild.
"""

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from rich.progress import track

from vaelab.data.image_files import ImagePreprocess, UnreadableImageError

#: Bumped whenever the cached arrays would come out differently for the same parameters.
CACHE_FORMAT = 2
SAMPLED_ROWS = 64
#: Unreadable files named in an error message; the count is always given.
LISTED_BAD_FILES = 20
#: Rows copied at a time when unreadable files are left out of a built cache.
COPY_ROWS = 4096


class UnreadableImagesError(ValueError):
    """Source files PIL cannot decode, found while data.skip_bad_files is false."""

    def __init__(self, failures: list[str], total: int, where: Path, fix: str):
        self.failures, self.total, self.where, self.fix = failures, total, where, fix
        shown = "\n  ".join(failures[:LISTED_BAD_FILES])
        more = (f"\n  ... and {len(failures) - LISTED_BAD_FILES} more"
                if len(failures) > LISTED_BAD_FILES else "")
        super().__init__(f"{len(failures)} of {total} image files in {where} cannot be read:"
                         f"\n  {shown}{more}\n{fix}")


class StaleCacheError(Exception):
    """A cache that does not match its sources or is damaged; the message says why."""


@dataclass(frozen=True)
class DecodedImages:
    """A split's images and which of the given files they came from."""

    images: np.ndarray  # uint8 [N, C, H, W], memory-mapped when cached
    kept: np.ndarray  # int64 [N]: the index of each image in the file list given
    skipped: list[Path]  # files left out as unreadable
    skipped_list: Path | None = None  # the file that lists them, beside the cache


def cache_folder(cache: bool, cache_dir: str | None, default: Path) -> Path | None:
    """Where the cache lives: data.cache_dir, else `default`; None with data.cache=false."""
    if not cache:
        return None
    return Path(cache_dir).expanduser() if cache_dir else default


def relative_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def source_fingerprint(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 of the files' names relative to `root`, sizes and modification times, in order."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{relative_name(path, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def array_digest(path: Path, array: np.memmap) -> str:
    """SHA-256 of the .npy header and of up to SAMPLED_ROWS evenly spaced rows of `array`."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read(array.offset))
    n = len(array)
    for row in np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).round().astype(np.int64)):
        digest.update(array[row].tobytes())
    return digest.hexdigest()


class ImageCache:
    """Decodes a split's image files (threads, progress bar) into a memory-mapped cache, or into
    memory when `folder` is None; reuses a cache that still matches its sources.

    `what` names the data in messages; `fix` ends the error about unreadable files;
    `extra_params` are further settings the cached rows depend on (e.g. how files were split).
    """

    def __init__(self, preprocess: ImagePreprocess, folder: str | Path | None,
                 workers: int = 8, skip_bad_files: bool = False, what: str = "images",
                 fix: str = "Delete or replace them.", extra_params: dict | None = None):
        self.preprocess = preprocess
        self.folder = Path(folder).expanduser() if folder is not None else None
        self.workers = max(1, workers)
        self.skip_bad_files = skip_bad_files
        self.what = what
        self.fix = fix
        self.extra_params = extra_params or {}

    def params(self) -> dict:
        return {"format": CACHE_FORMAT, **self.preprocess.params(), **self.extra_params}

    def path(self, split: str) -> Path:
        """The split's .npy file; the name carries the parameters (readable, then hashed)."""
        key = hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()
        return self.folder / f"{split}-{self.preprocess.tag()}-{key[:8]}.npy"

    @staticmethod
    def skipped_list(path: Path) -> Path:
        return path.with_suffix(".skipped.txt")

    # -- decoding --------------------------------------------------------------------------------
    def decode(self, paths: Sequence[Path], out: np.ndarray,
               description: str) -> dict[int, str]:
        """Fill out [N, C, H, W] with the preprocessed files, in threads; returns {index: error}
        of the files that could not be read (their rows are left as they were), in order."""
        errors: dict[int, str] = {}

        def one(i: int) -> None:
            try:
                out[i] = self.preprocess(paths[i])
            except UnreadableImageError as err:
                errors[i] = str(err)

        # PIL releases the GIL while decoding and resizing, so threads overlap (how much: see
        # scripts/bench_data.py --part folder).
        with ThreadPoolExecutor(self.workers) as pool:
            for _ in track(pool.map(one, range(len(paths))), total=len(paths),
                           description=description):
                pass
        return {i: errors[i] for i in sorted(errors)}

    def _check_unreadable(self, bad: dict[int, str], total: int, root: Path) -> None:
        """Raise for unreadable files unless they may be skipped; always if none is readable."""
        if not bad:
            return
        if not self.skip_bad_files or len(bad) == total:
            fix = self.fix if len(bad) < total else (
                "None of them is readable: is data.data_dir the right folder?")
            raise UnreadableImagesError(list(bad.values()), total, root, fix)

    def _decode_in_memory(self, split: str, paths: Sequence[Path], root: Path) -> DecodedImages:
        out = np.empty((len(paths), *self.preprocess.image_shape), dtype=np.uint8)
        bad = self.decode(paths, out, f"decoding {self.what} {split} ({len(paths)} images)")
        self._check_unreadable(bad, len(paths), root)
        kept = np.setdiff1d(np.arange(len(paths)), list(bad))
        return DecodedImages(out[kept] if bad else out, kept, [paths[i] for i in bad])

    # -- the cache ----------------------------------------------------------------------------
    def load_splits(self, files: dict[str, Sequence[Path]],
                    root: Path) -> dict[str, DecodedImages]:
        """`load` for each split; unreadable files of every split are reported together."""
        decoded, failures = {}, []
        for split, paths in files.items():
            try:
                decoded[split] = self.load(split, paths, root)
            except UnreadableImagesError as err:
                failures += err.failures
                fix = err.fix
        if failures:
            raise UnreadableImagesError(failures, sum(len(p) for p in files.values()), root, fix)
        return decoded

    def load(self, split: str, paths: Sequence[Path], root: Path) -> DecodedImages:
        """The split's images from a valid cache, else decoded (into a new cache when cached)."""
        if self.folder is None:
            return self._decode_in_memory(split, paths, root)
        path = self.path(split)
        fingerprint = source_fingerprint(paths, root)
        try:
            array, manifest = self.open_valid(path, fingerprint, len(paths))
        except StaleCacheError as stale:
            rank_zero_info(f"building the {self.what} {split} cache {path}: {stale}")
            self.build(path, paths, root, fingerprint, split)
            try:
                array, manifest = self.open_valid(path, fingerprint, len(paths))
            except StaleCacheError as err:
                raise RuntimeError(f"the cache {path} was just built but cannot be read back "
                                   f"({err}): delete {self.folder} and run again, or set "
                                   "data.cache=false") from err
        skipped = set(manifest["skipped"])
        kept = np.array([i for i, p in enumerate(paths) if relative_name(p, root) not in skipped],
                        dtype=np.int64)
        return DecodedImages(array, kept, [root / name for name in manifest["skipped"]],
                             self.skipped_list(path) if skipped else None)

    def open_valid(self, path: Path, fingerprint: str, total: int) -> tuple[np.memmap, dict]:
        """(the array, copy-on-write mapped, and the manifest); StaleCacheError when they do
        not match the sources (`fingerprint` of `total` files) or are damaged."""
        manifest_path = path.with_suffix(".json")
        if not manifest_path.is_file():
            raise StaleCacheError("no cache yet" if not path.exists()
                                  else "an interrupted build (no manifest)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StaleCacheError("its manifest is unreadable") from None
        if manifest.get("params") != self.params():
            raise StaleCacheError("it was built with other preprocessing parameters")
        if manifest.get("num_sources") != total or manifest.get("source") != fingerprint:
            raise StaleCacheError("the source images changed since it was built")
        if not path.is_file() or path.stat().st_size != manifest.get("bytes"):
            raise StaleCacheError("the array file is missing or has the wrong size")
        try:
            # Copy-on-write: pages load lazily, and nothing can write back to the cache.
            array = np.load(path, mmap_mode="c")
        except (ValueError, OSError, SyntaxError, EOFError):
            # numpy's own message (e.g. about allow_pickle) would only confuse here.
            raise StaleCacheError("its array file is damaged (the .npy header is unreadable)") \
                from None
        expected = (manifest.get("num_images"), *self.preprocess.image_shape)
        if array.dtype != np.uint8 or array.shape != expected:
            raise StaleCacheError("its array file is damaged (wrong shape or type)")
        if array_digest(path, array) != manifest.get("digest"):
            raise StaleCacheError("its array file is damaged (checksum mismatch)")
        return array, manifest

    def build(self, path: Path, paths: Sequence[Path], root: Path, fingerprint: str,
              split: str) -> None:
        """Decode into `<path>.<pid>.partial`, rename it to `path`, then write the manifest:
        a build that stops early leaves no manifest, so it is never mistaken for a cache."""
        manifest_path = path.with_suffix(".json")
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        compact = path.with_name(f"{path.name}.{os.getpid()}.compact.partial")
        shape = (len(paths), *self.preprocess.image_shape)
        try:
            with cache_write_errors(path, shape):
                path.parent.mkdir(parents=True, exist_ok=True)
                manifest_path.unlink(missing_ok=True)
                array = allocate(partial, shape)
            bad = self.decode(paths, array, f"caching {self.what} {split} ({len(paths)} images)")
            self._check_unreadable(bad, len(paths), root)
            array.flush()
            if bad:
                kept = np.setdiff1d(np.arange(len(paths)), list(bad))
                with cache_write_errors(path, shape):
                    rows = allocate(compact, (len(kept), *shape[1:]))
                for start in range(0, len(kept), COPY_ROWS):
                    rows[start:start + COPY_ROWS] = array[kept[start:start + COPY_ROWS]]
                rows.flush()
                del rows
                os.replace(compact, partial)
            del array
            with cache_write_errors(path, shape):
                os.replace(partial, path)
                self._write_manifest(path, paths, root, fingerprint, bad)
        finally:
            # Cleaning up must never hide the error that stopped the build.
            with suppress(OSError):
                partial.unlink(missing_ok=True)
            with suppress(OSError):
                compact.unlink(missing_ok=True)

    def _write_manifest(self, path: Path, paths: Sequence[Path], root: Path, fingerprint: str,
                        bad: dict[int, str]) -> None:
        skipped = [relative_name(paths[i], root) for i in bad]
        listing = self.skipped_list(path)
        if skipped:
            listing.write_text("".join(f"{line}\n" for line in bad.values()))
        else:
            listing.unlink(missing_ok=True)
        array = np.load(path, mmap_mode="r")
        manifest = {"params": self.params(), "num_sources": len(paths),
                    "num_images": len(paths) - len(bad), "skipped": skipped,
                    "source": fingerprint, "bytes": path.stat().st_size,
                    "digest": array_digest(path, array), "source_root": str(root)}
        manifest_path = path.with_suffix(".json")
        tmp = manifest_path.with_name(f"{manifest_path.name}.{os.getpid()}.partial")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, manifest_path)


def allocate(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 .npy of `shape` at `path`, memory-mapped for writing, its space reserved."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        # Reserve the disk space now: a full disk is then an OSError here, not a SIGBUS when a
        # memory-mapped page is written back halfway through the build.
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return array


@contextmanager
def cache_write_errors(path: Path, shape: tuple[int, ...]) -> Iterator[None]:
    """Turns an OSError while writing the cache into one that says how to fix it."""
    try:
        yield
    except OSError as err:
        # OSError(errno, ...) comes back as the same subclass (PermissionError, ...).
        raise OSError(
            err.errno, f"cannot write the image cache {path} ({err}): set data.cache_dir to a "
            f"writable folder with {np.prod(shape) / 1e9:.2f} GB free, or data.cache=false to "
            "decode into memory on every run") from err
