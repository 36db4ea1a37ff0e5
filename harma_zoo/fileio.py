"""Writing files so that a crash never leaves half of one."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_usual_permissions(path: Path) -> None:
    """``mkstemp`` makes files readable by their owner only; give ``path`` what ``open`` would (0666 less umask)."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary_path)`` in ``path``'s folder, then rename over ``path``.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        set_usual_permissions(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def lock_current_file(path: Path, create: bool = False) -> int:
    """A descriptor holding an exclusive flock on the file that ``path`` names once the lock is held.

    While this process waits, another may replace ``path`` (an atomic write) or remove it (a
    lock file cleaned up); the lock would then be on a file nobody else sees, so it retries on
    what ``path`` names now. ``create`` makes the file (and its folder) when it is missing.
    """
    path = Path(path)
    while True:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o644)
        except FileNotFoundError:
            if create:  # the folder was removed between mkdir and open
                continue
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
