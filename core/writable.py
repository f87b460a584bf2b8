"""Checks, before anything is sent, that the files a job will write can be written.

A job that finds out at its first rejected record, or its first checkpoint, that a folder is
read-only has already sent data it can no longer account for. So the host and plugins check
each output folder first: created if missing, then a real file created and removed in it
(permission bits alone do not tell: root ignores them, a read-only mount does not).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from arrowbulk.errors import ConfigError


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
