"""The reject file: one JSON line per record that was not delivered, with the reason.

Format (documented in docs/delivery.md): ``run_id``, ``task``, ``row`` (0-based position of
the record in its task's input), ``stage`` (``validation`` or ``server``), ``column``,
``rule``, ``message``, ``attempt``, ``record`` (the source row, or the user object that was
sent), and for the server's refusals ``sent`` (the user object it refused).

Each line is one ``write()`` to a file opened for appending, under a lock, so parallel tasks
never interleave and a crash can tear at most the last line (``retry`` detects and skips it).
:meth:`RejectWriter.sync` makes the lines durable; an output calls it before it reports the
rejected rows as settled, so a resume never skips a rejection that is not on disk. A failed
write (a full disk, a read-only or failing device) raises :class:`RejectWriteError`, which
stops the job: a record that cannot be written as rejected must stay unsent.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from arrowbulk.errors import JobError
from arrowbulk.secret import scrub


class RejectWriteError(JobError):
    """The reject file could not be written; the job stops."""


class RejectWriter:
    """Appends reject lines to a file opened on first use (no file when nothing is rejected)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.count = 0
        self.failed: RejectWriteError | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._unsynced = False

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
        failures: list[dict[str, Any]] | None = None,
    ) -> None:
        """One rejected record; ``failures`` lists every rule it breaks when there are several
        (each ``{column, rule, message}``), the first of them repeated in the line's own keys."""
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
        if failures:
            line["failures"] = [{**f, "message": scrub(f["message"])} for f in failures]
        data = orjson.dumps(
            line,
            default=str,
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z,
        )
        with self._lock:
            self._guard(lambda: self._append(data))
            self.count += 1

    def sync(self) -> None:
        """Make every line written so far durable (fsync); a no-op when nothing is new."""
        with self._lock:
            fd = self._fd
            if self._unsynced and fd is not None:
                self._guard(lambda: os.fsync(fd))
                self._unsynced = False

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    if self._unsynced and self.failed is None:
                        os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:  # one write() in practice; a short write continues where it stopped
            written = os.write(self._fd, view)
            view = view[written:]
        self._unsynced = True

    def _guard(self, action: Any) -> None:
        if self.failed is not None:
            raise self.failed
        try:
            action()
        except OSError as error:
            self.failed = RejectWriteError(
                f"cannot write the reject file {self.path}: {error.strerror or error} "
                f"(errno {error.errno}); the job stopped so that no rejected record goes "
                "unrecorded. Free space or fix the folder, then rerun (with --resume to continue)"
            )
            raise self.failed from None


def source_record(rows: pa.RecordBatch | pa.Table, row: int) -> dict[str, Any]:
    """Row ``row`` as the reject file's ``record``: Python values, which the writer turns to
    JSON. A value Python cannot hold (a timestamp past year 9999, nanoseconds without pandas)
    is written as Arrow's text of it: a record is rejected because of such values, and its
    line must not fail for them."""
    one = rows.slice(row, 1)
    try:
        found: dict[str, Any] = one.to_pylist()[0]
        return found
    except (ValueError, OverflowError, pa.ArrowException):
        pass
    record: dict[str, Any] = {}
    for name, column in zip(one.column_names, one.columns, strict=True):
        try:
            record[name] = column.to_pylist()[0]
        except (ValueError, OverflowError, pa.ArrowException):
            try:
                record[name] = column.cast(pa.string()).to_pylist()[0]
            except pa.ArrowException:
                record[name] = f"<a {column.type} value with no text form>"
    return record
