"""Progress of a running job: a bar on a terminal, plain periodic log lines elsewhere.

It counts rows read and rows the output reports settled (acknowledged or rejected by the
destination), shows a percentage and an estimate of the time left when the input's row count
is known (Parquet metadata, a spool), and what the output is waiting on (retries, a rate
limit) when it says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

from arrowbulk.spi import Reporter

log = logging.getLogger("arrowbulk.progress")


class Progress(Reporter):
    """Thread-safe counters with an optional reporter thread."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._rows = 0
        self._settled = 0
        self.total: int | None = None
        self._describe: Callable[[], str] | None = None
        self._started = time.monotonic()
        self._stream = stream
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def rows(self) -> int:
        with self._lock:
            return self._rows

    def add(self, rows: int) -> None:
        with self._lock:
            self._rows += rows

    def acknowledge(self, rows: int) -> None:
        with self._lock:
            self._settled += rows

    def status(self, describe: Callable[[], str]) -> None:
        self._describe = describe

    def start(self) -> None:
        if self._stream is None:
            return
        on_terminal = self._stream.isatty()
        interval = 0.2 if on_terminal else self._interval
        self._thread = threading.Thread(
            target=self._report,
            args=(on_terminal, interval),
            name="arrowbulk-progress",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self._stream is not None and self._stream.isatty():
                self._stream.write("\r\033[K")
                self._stream.flush()

    def line(self) -> str:
        """What the job has done so far, in one line."""
        with self._lock:
            rows, settled = self._rows, self._settled
        elapsed = time.monotonic() - self._started
        done = settled or rows  # an output that reports nothing: count what was read
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"read {rows:,}" + (f" of {self.total:,}" if self.total else "")]
        if settled:
            parts.append(f"settled {settled:,}")
        if self.total:
            parts.append(f"{min(done / self.total, 1.0):.0%}")
            if rate > 0 and done < self.total:
                parts.append(f"ETA {_duration((self.total - done) / rate)}")
        parts.append(f"{rate:,.0f} rows/s")
        waiting = self._describe() if self._describe is not None else ""
        if waiting:
            parts.append(f"waiting: {waiting}")
        return "  ".join(parts)

    def _report(self, on_terminal: bool, interval: float) -> None:
        while not self._stop.wait(interval):
            if on_terminal and self._stream is not None:
                spinner = "|/-\\"[int((time.monotonic() - self._started) * 5) % 4]
                self._stream.write(f"\r\033[K{spinner} {self.line()}")
                self._stream.flush()
            else:
                log.info("progress: %s", self.line())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
