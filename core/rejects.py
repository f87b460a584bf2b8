"""The reject file: one JSON line per record that was not delivered, with the reason.

Format (documented in docs/delivery.md): ``run_id``, ``task``, ``row`` (0-based position of
the record in its task's input), ``stage`` (``validation`` or ``server``), ``column``,
``rule``, ``message``, ``attempt``, ``record`` (the source row, or the user object that was
sent), and for the server's refusals ``sent`` (the user object it refused). Lines are
written whole under a lock, so parallel tasks never interleave.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from arrowbulk.secret import scrub


class RejectWriter:
    """Appends reject lines to a file opened on first use (no file when nothing is rejected)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.count = 0
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None

    def write(
        self,
        *,
        task: int,
        row: int,
        stage: str,
        rule: str,
        message: str,
        record: Any,
        column: str | None = None,
        attempt: int = 0,
        sent: Any = None,
    ) -> None:
        line = {
            "run_id": self.run_id,
            "task": task,
            "row": row,
            "stage": stage,
            "column": column,
            "rule": rule,
            "message": scrub(message),
            "attempt": attempt,
            "record": record,
        }
        if sent is not None:
            line["sent"] = sent
        data = orjson.dumps(
            line,
            default=str,
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z,
        )
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across calls, closed in close()
            self._file.write(data)
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
