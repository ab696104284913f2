"""Files written whole or not at all: written to a temporary file beside the target and renamed
onto it (a rename within one folder is atomic), so a kill, a crash or a full disk never leaves
half a file under the real name.

    <folder>/.<name>.<host>.<pid><suffix>    a temporary of <folder>/<name>

A temporary carries its writer's host and process id, so DDP ranks and jobs on other nodes never
write the same one, and one left behind by a killed process (SIGKILL skips every clean-up) is
recognised and removed by the next writer of the same file (`remove_stale`).
"""

import glob
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vaelab.console import log


def temporary(path: Path, suffix: str = ".partial") -> Path:
    """A temporary name beside `path` for this process alone."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}{suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to; renamed onto `path` when the block ends
    without error, deleted otherwise."""
    path = Path(path)
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of `path` left by processes of this host that no longer run."""
    host = socket.gethostname()
    stale = []
    prefix = f".{path.name}.{host}."
    for candidate in path.parent.glob(glob.escape(prefix) + "*"):
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.append(candidate)
    return stale


def remove_stale(path: Path, what: str) -> None:
    """Delete the temporaries of `path` that killed writers left, saying how much space that
    frees (a killed cache build leaves a file the size of the whole cache)."""
    for leftover in stale_temporaries(path):
        with suppress(OSError):
            size = leftover.stat().st_size
            leftover.unlink()
            log.info(f"removed {leftover} ({size / 1e9:.2f} GB), left by an interrupted "
                     f"{what} write")
