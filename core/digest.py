"""Content digests of input files, for ``--resume``'s check that the input did not change.

Size and modification time alone are not enough: ``cp -p`` or ``touch -d`` rewrite a file of
the same size with the old time. A SHA-256 of the whole content is: measured at ~2 GB/s on the
2-core development machine from the page cache (hashlib uses the CPU's SHA extensions), so a
1 GB input costs about half a second (plus the disk read, when the file is not cached), once
per ``--resume`` run. Digests are computed only when a resume state is used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from arrowbulk.errors import JobError


def file_digest(path: Path) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of one file."""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = path.stat().st_size
    except OSError as error:
        raise JobError(f"cannot read {path} to fingerprint it: {error.strerror}") from None
    return {"path": str(path), "size": size, "sha256": digest}
