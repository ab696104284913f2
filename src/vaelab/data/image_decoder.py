"""A split's image files decoded in threads (with a progress bar) into the array cache
(vaelab.data.cache), or into memory; unreadable files are named, or left out and listed.

    <cache dir>/<split>-<tag>-<hash>.npy/.json     the split's cache (see vaelab.data.cache)
    <cache dir>/<split>-<tag>-<hash>.skipped.txt   files left out (data.skip_bad_files=true)

`<tag>` reads like "64x64-crop148x148-bicubic"; `<hash>` covers every parameter, so each set of
parameters has its own files.
"""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from vaelab.data.cache import cached_array, keyed_path, source_fingerprint
from vaelab.data.image_files import ImagePreprocess, UnreadableImageError

#: Bumped whenever the decoded images would come out differently for the same parameters.
DECODE_FORMAT = 2
#: Unreadable files named in an error message; the count is always given.
LISTED_BAD_FILES = 20


class UnreadableImagesError(ValueError):
    """Source files PIL cannot decode, found while data.skip_bad_files is false."""

    def __init__(self, failures: list[str], total: int, where: Path, fix: str):
        self.failures, self.total, self.where, self.fix = failures, total, where, fix
        shown = "\n  ".join(failures[:LISTED_BAD_FILES])
        more = (f"\n  ... and {len(failures) - LISTED_BAD_FILES} more"
                if len(failures) > LISTED_BAD_FILES else "")
        super().__init__(f"{len(failures)} of {total} image files in {where} cannot be read:"
                         f"\n  {shown}{more}\n{fix}")


@dataclass(frozen=True)
class DecodedImages:
    """A split's images and which of the given files they came from."""

    images: np.ndarray  # uint8 [N, C, H, W], memory-mapped when cached
    kept: np.ndarray  # int64 [N]: the index of each image in the file list given
    skipped: list[Path]  # files left out as unreadable
    skipped_list: Path | None = None  # the file that lists them, beside the cache


class ImageDecoder:
    """Decodes a split's image files into its cache in `folder` (reused while it matches the
    files and parameters), or into memory when `folder` is None.

    `what` names the data in messages; `fix` ends the error about unreadable files;
    `extra_params` are further settings the rows depend on (e.g. how files were split).
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
        return {"format": DECODE_FORMAT, **self.preprocess.params(), **self.extra_params}

    def path(self, split: str) -> Path:
        """The split's .npy file; the name carries the parameters (readable, then hashed)."""
        return keyed_path(self.folder, f"{split}-{self.preprocess.tag()}", self.params())

    @staticmethod
    def skipped_list(path: Path) -> Path:
        return path.with_suffix(".skipped.txt")

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

    def decode_readable(self, split: str, paths: Sequence[Path], root: Path, out: np.ndarray,
                        verb: str) -> dict[int, str]:
        """`decode`, then raise for unreadable files unless they may be skipped (always when
        none is readable); returns {index: error} of those skipped."""
        bad = self.decode(paths, out, f"{verb} {self.what} {split} ({len(paths)} images)")
        if bad and (not self.skip_bad_files or len(bad) == len(paths)):
            fix = self.fix if len(bad) < len(paths) else (
                "None of them is readable: is data.data_dir the right folder?")
            raise UnreadableImagesError(list(bad.values()), len(paths), root, fix)
        return bad

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
        """The split's images from its valid cache, else decoded (into a new cache when cached)."""
        shape = (len(paths), *self.preprocess.image_shape)
        if self.folder is None:
            out = np.empty(shape, dtype=np.uint8)
            bad = self.decode_readable(split, paths, root, out, "decoding")
            kept = np.setdiff1d(np.arange(len(paths)), list(bad))
            return DecodedImages(out[kept] if bad else out, kept, [paths[i] for i in bad])
        path = self.path(split)

        def fill(out: np.memmap) -> list[int]:
            bad = self.decode_readable(split, paths, root, out, "caching")
            listing = self.skipped_list(path)
            if bad:
                listing.write_text("".join(f"{line}\n" for line in bad.values()),
                                   errors="backslashreplace")  # names that are not UTF-8
            else:
                listing.unlink(missing_ok=True)
            return list(bad)

        cached = cached_array(path, self.params(), shape, fill, self.what,
                              source=source_fingerprint(paths, root),
                              no_cache_hint=", or data.cache=false to decode into memory on "
                                            "every run")
        kept = np.setdiff1d(np.arange(len(paths)), cached.dropped)
        skipped = [paths[i] for i in cached.dropped]
        return DecodedImages(cached.array, kept, skipped,
                             self.skipped_list(path) if skipped else None)
