"""One uint8 array kept as a memory-mapped .npy file beside a JSON manifest written last.

The manifest records what the array was built from (`params`); a missing or unreadable manifest,
other parameters or a file of the wrong size mean the array is built again. A crash while
building leaves no manifest, so a half-written array is never used.
"""

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

#: Bumped when the manifest's layout changes; each caller versions its own params.
MANIFEST_FORMAT = 1


def manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


def source_fingerprint(path: Path) -> dict:
    """What identifies a source file's version: its name, size and modification time."""
    stat = path.stat()
    return {"file": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_problem(path: Path, params: dict, shape: Sequence[int]) -> str | None:
    """Why the array at `path` cannot be used for `params` and `shape`, or None when it can."""
    params = json.loads(json.dumps(params))  # as the manifest stores it: tuples become lists
    manifest_file = manifest_path(path)
    if not manifest_file.is_file():
        return "no cache yet" if not path.exists() else "an interrupted build (no manifest)"
    try:
        manifest = json.loads(manifest_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "its manifest is unreadable"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return "its manifest is from another vaelab version"
    if manifest.get("params") != params or manifest.get("shape") != list(shape):
        return "it was built with other parameters"
    if not path.is_file() or path.stat().st_size != manifest.get("bytes"):
        return "the array file is missing or has the wrong size"
    return None


def build_cache(path: Path, params: dict, shape: Sequence[int],
                fill: Callable[[np.ndarray], None]) -> None:
    """Write `fill(out)`'s uint8 array `shape` to `path`, then (last) the manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest_file = manifest_path(path)
    manifest_file.unlink(missing_ok=True)
    # Per-process temporary names: DDP ranks or sweep jobs building at once never collide.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=tuple(shape))
        fill(out)
        out.flush()
        del out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    manifest = {"format": MANIFEST_FORMAT, "params": params, "shape": list(shape),
                "bytes": path.stat().st_size}
    tmp = manifest_file.with_name(f"{manifest_file.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, manifest_file)


def cached_array(path: str | Path, params: dict, shape: Sequence[int],
                 fill: Callable[[np.ndarray], None], what: str) -> np.ndarray:
    """uint8 array `shape` memory-mapped from `path`, built first by `fill(out)` when the
    cache is missing or stale. `params` must be JSON-serialisable; `what` names it in messages."""
    path = Path(path).expanduser()
    problem = cache_problem(path, params, shape)
    if problem is not None:
        rank_zero_info(f"building the {what} cache {path}: {problem}")
        try:
            build_cache(path, params, shape, fill)
        except PermissionError as err:
            raise PermissionError(f"cannot write the {what} cache {path} ({err}): set "
                                  "data.cache_dir to a writable folder") from err
    # Copy-on-write mapping: pages load lazily and nothing can write back to the cache.
    return np.load(path, mmap_mode="c")
