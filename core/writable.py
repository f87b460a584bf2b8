"""Checks, before anything is sent, that the files a job will write can be written.

A job that finds out at its first rejected record, or its first checkpoint, that a folder is
read-only has already sent data it can no longer account for. So the host and plugins check
each output folder first: created if missing, then a real file created and removed in it
(permission bits alone do not tell: root ignores them, a read-only mount does not).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from arrowbulk.errors import ConfigError


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary)`` a file beside ``path``, flush it to disk, rename it over ``path``,
    and flush the folder: a crash leaves the old file or the new one, never half of one.

    The temporary name is unique per write (a leftover from a crash, or a second writer, can
    never publish a half-written file). Raises ``OSError``; the caller names what failed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        temporary.unlink(missing_ok=True)


def check_writable_folder(folder: Path, what: str) -> None:
    """Raise :class:`ConfigError` naming ``what`` unless a file can be created in ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".arrowbulk-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"{what}: cannot write in {folder}: {error.strerror or error}; "
            "choose a writable folder (nothing was sent)"
        ) from None
