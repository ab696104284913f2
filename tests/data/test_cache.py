"""The one array cache (vaelab.data.cache): built once, reused, rebuilt when stale, half-written
or damaged, rows left out, and errors that name data.cache_dir."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vaelab.data.cache import CacheWriteError, cached_array, keyed_path, source_fingerprint

SHAPE = (300, 2, 3, 5)  # 300 rows: more than the 64 rows the checksum samples
PARAMS = {"format": 1, "size": [3, 5]}


def rows(shape=SHAPE) -> np.ndarray:
    """The expected contents: row i holds i % 251 + the pixel index, mod 256."""
    pixels = np.arange(np.prod(shape[1:])).reshape(shape[1:])
    return ((np.arange(shape[0]) % 251)[:, None, None, None] + pixels) % 256


class CountingFill:
    """A fill that writes `rows`, counts its calls and leaves out `dropped`."""

    def __init__(self, dropped=()):
        self.calls, self.dropped = 0, list(dropped)

    def __call__(self, out):
        self.calls += 1
        out[:] = rows(out.shape)
        return self.dropped


def load(path: Path, fill, params=PARAMS, shape=SHAPE, source=None):
    return cached_array(path, params, shape, fill, "test data", source=source)


def test_built_once_then_reused_read_only(tmp_path):
    path = tmp_path / "cache" / "a.npy"
    fill = CountingFill()
    cached = load(path, fill)
    assert fill.calls == 1 and cached.dropped == []
    assert cached.array.dtype == np.uint8 and np.array_equal(cached.array, rows())
    assert isinstance(cached.array, np.memmap) and cached.array.mode == "c"
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["params"] == PARAMS and manifest["shape"] == list(SHAPE)
    assert manifest["num_images"] == SHAPE[0] and manifest["bytes"] == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json", "a.npy"]
    cached.array[0] = 0  # copy-on-write: the file keeps its contents
    again = load(path, fill)
    assert fill.calls == 1 and np.array_equal(again.array, rows())


@pytest.mark.parametrize("change", ["params", "shape", "source"])
def test_rebuilt_when_what_it_was_built_from_changes(tmp_path, change):
    path = tmp_path / "a.npy"
    fill = CountingFill()
    load(path, fill, source="one")
    other = {"params": {"params": {**PARAMS, "size": [4, 5]}},
             "shape": {"shape": (10, *SHAPE[1:])}, "source": {"source": "two"}}[change]
    cached = load(path, fill, **{"source": "one", **other})
    assert fill.calls == 2
    assert cached.array.shape == other.get("shape", SHAPE)


def damage_manifest(path: Path) -> None:
    path.with_suffix(".json").write_text("{not json")


def drop_manifest(path: Path) -> None:
    path.with_suffix(".json").unlink()  # as a build that stopped before its last step


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def damage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"'descr': '|u1'", b"'descr': '|O' ", 1))


def flip_first_pixel(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - int(np.prod(SHAPE))] ^= 0xFF  # row 0 is always sampled
    path.write_bytes(bytes(data))


def old_manifest(path: Path) -> None:
    """The layout of the array cache that this module replaced: no digest, format 1."""
    manifest = {"format": 1, "params": PARAMS, "shape": list(SHAPE),
                "bytes": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, reason", [
    (damage_manifest, "its manifest is unreadable"),
    (drop_manifest, "an interrupted build"),
    (truncate, "wrong size"),
    (damage_header, "damaged"),
    (flip_first_pixel, "checksum mismatch"),
    (old_manifest, "another vaelab version"),
])
def test_rebuilt_when_half_written_or_damaged(tmp_path, caplog, damage, reason):
    path = tmp_path / "a.npy"
    fill = CountingFill()
    load(path, fill)
    damage(path)
    with caplog.at_level(logging.INFO):
        cached = load(path, fill)
    assert fill.calls == 2 and np.array_equal(cached.array, rows())
    assert reason in caplog.text and "allow_pickle" not in caplog.text


def test_rows_left_out_by_fill_are_dropped_and_remembered(tmp_path):
    path = tmp_path / "a.npy"
    fill = CountingFill(dropped=[299, 5, 0, 5])
    cached = load(path, fill)
    kept = [i for i in range(SHAPE[0]) if i not in (0, 5, 299)]
    assert cached.dropped == [0, 5, 299] and np.array_equal(cached.array, rows()[kept])
    assert not list(tmp_path.glob("*partial*"))
    again = load(path, fill)
    assert fill.calls == 1 and again.dropped == [0, 5, 299]
    assert np.array_equal(again.array, rows()[kept])


def test_a_failing_fill_leaves_no_cache_and_its_error_is_kept(tmp_path):
    path = tmp_path / "a.npy"

    def broken(out):
        out[:10] = 1
        raise OSError(5, "the source disk failed")

    with pytest.raises(OSError, match="the source disk failed") as err:
        load(path, broken)
    assert not isinstance(err.value, CacheWriteError), "not the cache folder's fault"
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_names_data_cache_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(CacheWriteError, match=r"cannot write the test data cache .*set "
                                              r"data.cache_dir to a writable folder with 0\.00 GB "
                                              r"free, or data.cache=false") as err:
        cached_array(blocker / "cache" / "a.npy", PARAMS, SHAPE, CountingFill(), "test data",
                     no_cache_hint=", or data.cache=false")
    assert isinstance(err.value, OSError)


def test_params_need_a_format_version(tmp_path):
    with pytest.raises(ValueError, match="'format' version"):
        load(tmp_path / "a.npy", CountingFill(), params={"size": [3, 5]})


def test_file_names_and_fingerprints(tmp_path):
    assert keyed_path(tmp_path, "train", PARAMS) == keyed_path(tmp_path, "train", dict(PARAMS))
    assert keyed_path(tmp_path, "train", PARAMS) != keyed_path(tmp_path, "train",
                                                               {**PARAMS, "format": 2})
    files = [tmp_path / "b" / "x.png", tmp_path / "y.png"]
    files[0].parent.mkdir()
    for f in files:
        f.write_bytes(b"12")
    before = source_fingerprint(files, tmp_path)
    assert source_fingerprint(files[::-1], tmp_path) != before, "order matters"
    files[1].write_bytes(b"123")
    assert source_fingerprint(files, tmp_path) != before


def test_a_killed_builds_partial_file_is_removed_by_the_next_run(tmp_path, caplog):
    """Issue 21 item 7: a build killed mid-way (SIGKILL: no clean-up) left a file the size of
    the whole cache (GBs for dSprites or CelebA) for ever."""
    import socket
    import subprocess
    import sys

    path = tmp_path / "cache" / "a.npy"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path.parent.mkdir()
    leftover = path.with_name(f".{path.name}.{socket.gethostname()}.{dead}.partial")
    leftover.write_bytes(b"\0" * 100_000)
    alive = path.with_name(f".{path.name}.{socket.gethostname()}.1.partial")  # init: running
    alive.write_bytes(b"\0")
    with caplog.at_level(logging.INFO):
        load(path, CountingFill())
    assert not leftover.exists() and alive.exists()
    assert f"removed {leftover} (0.00 GB), left by an interrupted test data cache" in caplog.text
