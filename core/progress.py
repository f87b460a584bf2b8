"""Progress of a running job: a bar on a terminal, plain periodic log lines elsewhere."""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

log = logging.getLogger("arrowbulk.progress")


class Progress:
    """Thread-safe row counter with an optional reporter thread."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._rows = 0
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

    def _report(self, on_terminal: bool, interval: float) -> None:
        while not self._stop.wait(interval):
            rows, elapsed = self.rows, time.monotonic() - self._started
            rate = rows / elapsed if elapsed > 0 else 0.0
            if on_terminal and self._stream is not None:
                spinner = "|/-\\"[int(elapsed * 5) % 4]
                self._stream.write(
                    f"\r{spinner} {rows:,} rows  {rate:,.0f} rows/s  {elapsed:,.0f}s"
                )
                self._stream.flush()
            else:
                log.info("progress: %d rows, %.0f rows/s, %.0fs", rows, rate, elapsed)
