"""One preprocessed uint8 array kept on disk for every dataset that caches (image folders,
CelebA, rendered sprites, dSprites, 3dshapes): a memory-mapped .npy and a manifest written last.

    <folder>/<name>.npy    uint8 [N, ...], served copy-on-write memory-mapped
    <folder>/<name>.json   the manifest
    <folder>/.<name>.npy.<host>.<pid>.partial   a build in progress (vaelab.atomic.temporary);
                           one that a killed build left is deleted by the next run's

The array is used only if its manifest is there (a build that stopped early leaves none) and
records (1) the same parameters (each caller's own format version among them), (2) the same
source files, by relative name, size and modification time, (3) the same shape, (4) the .npy's
size in bytes, and (5) the SHA-256 of the .npy header and of up to SAMPLED_ROWS evenly spaced
rows; else it is built again. A damaged header is caught by numpy's own checks or by (5). A
same-size change inside a row that is not sampled goes unnoticed: delete the cache folder to
force a rebuild.
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from vaelab.atomic import remove_stale, temporary

#: Bumped when the manifest's layout or its checks change (every cache is then rebuilt).
MANIFEST_FORMAT = 2
SAMPLED_ROWS = 64
#: Rows copied at a time when rows are left out of a built array.
COPY_ROWS = 4096

#: fill(out) writes every row of `out`; it returns the rows it could not produce (left out of
#: the cache), or None.
Fill = Callable[[np.memmap], Iterable[int] | None]


class StaleCacheError(Exception):
    """A cache that does not match its parameters or sources, or is damaged; says why."""


class CacheWriteError(OSError):
    """The cache folder is not writable or is full; the message names data.cache_dir."""


class CachedArray(NamedTuple):
    """A cache's array and the rows its fill left out."""

    array: np.memmap  #: uint8 [shape[0] - len(dropped), *shape[1:]], copy-on-write mapped
    dropped: list[int]  #: rows of the requested shape that fill left out, in order


def cache_folder(cache_dir: str | None, default: Path) -> Path:
    """data.cache_dir when it is set, else `default`."""
    return Path(cache_dir).expanduser() if cache_dir else default


def keyed_path(folder: Path, stem: str, params: dict) -> Path:
    """`<folder>/<stem>-<hash of params>.npy`: each set of parameters gets its own file."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return folder / f"{stem}-{key[:8]}.npy"


def source_fingerprint(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 of the files' names relative to `root`, sizes and modification times, in order."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        # os.fsencode: the name's bytes as on disk, whatever their encoding
        name = os.fsencode(path.relative_to(root).as_posix())
        digest.update(name + f"\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def array_digest(path: Path, array: np.memmap) -> str:
    """SHA-256 of the .npy header and of up to SAMPLED_ROWS evenly spaced rows of `array`."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read(array.offset))
    n = len(array)
    for row in np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).round().astype(np.int64)):
        digest.update(array[row].tobytes())
    return digest.hexdigest()


def cached_array(path: str | Path, params: dict, shape: Sequence[int], fill: Fill, what: str,
                 source: str | None = None, no_cache_hint: str = "") -> CachedArray:
    """The uint8 array `shape` at `path`, built first by `fill(out)` when it is missing, stale,
    half-written or damaged.

    `params`: everything the rows depend on, JSON-serialisable, with a "format" version bumped
    whenever the caller's rows would come out differently; `source`: a `source_fingerprint` of
    the files the rows come from; `what` names the data in messages; `no_cache_hint` ends the
    error about an unwritable folder (e.g. ", or data.cache=false to ...").
    """
    if "format" not in params:
        raise ValueError(f"the {what} cache parameters need a 'format' version: {params}")
    path = Path(path).expanduser()
    remove_stale(path, f"{what} cache")  # a build killed mid-way left a file of its full size
    expected = {"format": MANIFEST_FORMAT, "params": json.loads(json.dumps(params)),
                "shape": [int(s) for s in shape], "source": source}
    try:
        return open_cache(path, expected)
    except StaleCacheError as stale:
        rank_zero_info(f"building the {what} cache {path}: {stale}")
    build_cache(path, expected, fill, what, no_cache_hint)
    try:
        return open_cache(path, expected)
    except StaleCacheError as err:
        raise RuntimeError(f"the {what} cache {path} was just built but cannot be read back "
                           f"({err}): delete {path.parent} and run again{no_cache_hint}"
                           ) from err


def manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


def open_cache(path: Path, expected: dict) -> CachedArray:
    """The array (copy-on-write mapped) and its dropped rows; StaleCacheError when the manifest
    is not `expected` or the array does not match it."""
    manifest_file = manifest_path(path)
    if not manifest_file.is_file():
        raise StaleCacheError("no cache yet" if not path.exists()
                              else "an interrupted build (no manifest)")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StaleCacheError("its manifest is unreadable") from None
    if not isinstance(manifest, dict) or manifest.get("format") != expected["format"]:
        raise StaleCacheError("its manifest is from another vaelab version")
    if manifest.get("params") != expected["params"] or manifest.get("shape") != expected["shape"]:
        raise StaleCacheError("it was built with other parameters")
    if manifest.get("source") != expected["source"]:
        raise StaleCacheError("the source files changed since it was built")
    if not path.is_file() or path.stat().st_size != manifest.get("bytes"):
        raise StaleCacheError("the array file is missing or has the wrong size")
    try:
        # Copy-on-write: pages load lazily, and nothing can write back to the cache.
        array = np.load(path, mmap_mode="c")
    except (ValueError, OSError, SyntaxError, EOFError):
        # numpy's own message (e.g. about allow_pickle) would only confuse here.
        raise StaleCacheError("its array file is damaged (the .npy header is unreadable)") \
            from None
    dropped = manifest.get("dropped")
    rows = expected["shape"][0] - len(dropped) if isinstance(dropped, list) else None
    if array.dtype != np.uint8 or list(array.shape) != [rows, *expected["shape"][1:]]:
        raise StaleCacheError("its array file is damaged (wrong shape or type)")
    if array_digest(path, array) != manifest.get("digest"):
        raise StaleCacheError("its array file is damaged (checksum mismatch)")
    return CachedArray(array, dropped)


def build_cache(path: Path, expected: dict, fill: Fill, what: str, no_cache_hint: str) -> None:
    """`fill` into a temporary file beside `path`, rename it to `path`, then write the manifest:
    a build that stops early leaves no manifest, so it is never mistaken for a cache."""
    shape = tuple(expected["shape"])
    partial, compact = temporary(path), temporary(path, ".compact.partial")
    try:
        with cache_write_errors(path, shape, what, no_cache_hint):
            path.parent.mkdir(parents=True, exist_ok=True)
            manifest_path(path).unlink(missing_ok=True)
            out = allocate(partial, shape)
        # Not inside cache_write_errors: fill's own OSErrors are about its sources.
        dropped = sorted({int(i) for i in fill(out) or ()})
        with cache_write_errors(path, shape, what, no_cache_hint):
            out.flush()
            if dropped:
                leave_out(out, dropped, compact)
                os.replace(compact, partial)
            del out
            os.replace(partial, path)
            write_manifest(path, {**expected, "dropped": dropped,
                                  "num_images": shape[0] - len(dropped)})
    finally:
        # Cleaning up must never hide the error that stopped the build.
        for leftover in (partial, compact):
            with suppress(OSError):
                leftover.unlink(missing_ok=True)


def leave_out(array: np.ndarray, dropped: Sequence[int], target: Path) -> None:
    """Write the rows of `array` but `dropped` to a new .npy at `target`, COPY_ROWS at a time."""
    kept = np.setdiff1d(np.arange(len(array)), dropped)
    rows = allocate(target, (len(kept), *array.shape[1:]))
    for start in range(0, len(kept), COPY_ROWS):
        rows[start:start + COPY_ROWS] = array[kept[start:start + COPY_ROWS]]
    rows.flush()


def write_manifest(path: Path, manifest: dict) -> None:
    """The manifest of the array at `path`, with its size and digest; replaced atomically."""
    array = np.load(path, mmap_mode="r")
    manifest = {**manifest, "bytes": path.stat().st_size, "digest": array_digest(path, array)}
    target = manifest_path(path)
    tmp = temporary(target)
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, target)


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
def cache_write_errors(path: Path, shape: Sequence[int], what: str,
                       no_cache_hint: str) -> Iterator[None]:
    """Turns an OSError while writing the cache into a CacheWriteError that says how to fix it."""
    try:
        yield
    except CacheWriteError:
        raise
    except OSError as err:
        raise CacheWriteError(
            err.errno, f"cannot write the {what} cache {path} ({err}): set data.cache_dir to a "
            f"writable folder with {np.prod(shape) / 1e9:.2f} GB free{no_cache_hint}") from err
