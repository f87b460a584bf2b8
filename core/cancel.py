"""Why a job is stopping, shared by the host and every plugin of the job.

One :class:`Cancellation` per run travels on :class:`~arrowbulk.RunContext`. Whoever must stop
the job (a signal, a failed write of the state or reject file, a task's error) calls
:meth:`Cancellation.cancel` with the reason; the first reason wins. The host stops reading at
the next batch; a plugin that starts work of its own (requests, uploads) registers a callback
with :meth:`Cancellation.on_cancel` to stop starting it, and may wait for work already started
until :attr:`Cancellation.deadline`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from arrowbulk.errors import JobError


class Interrupted(JobError):
    """The run was asked to stop by a signal (SIGINT, SIGTERM)."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(
            f"interrupted by {signal_name}: stopped reading and sending; records not "
            "acknowledged are counted unsent (rerun with --resume STATE to continue)"
        )
        self.signal_name = signal_name
        self.exit_code = exit_code


class Cancellation:
    """A one-way switch with a reason; thread-safe."""

    def __init__(self, grace_seconds: float = 30.0) -> None:
        self.grace_seconds = grace_seconds
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: BaseException | None = None
        self._deadline: float | None = None
        self._callbacks: list[Callable[[BaseException], None]] = []

    @property
    def reason(self) -> BaseException | None:
        return self._reason

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` by which work already started should have ended."""
        return self._deadline

    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def remaining(self) -> float | None:
        """Seconds left until the deadline (None before any cancel)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def cancel(self, reason: BaseException) -> bool:
        """Stop the job for ``reason``; return False when it was already stopping."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            self._deadline = time.monotonic() + self.grace_seconds
            callbacks = list(self._callbacks)
        self._event.set()
        for callback in callbacks:
            callback(reason)
        return True

    def on_cancel(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback(reason)`` when the job stops (at once if it already has)."""
        with self._lock:
            reason = self._reason
            if reason is None:
                self._callbacks.append(callback)
                return
        callback(reason)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)
