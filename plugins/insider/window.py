"""How many requests may be in flight: a window that adapts to the API, as TCP's does.

A fixed window caps throughput at window / latency: 4 requests at 150 ms is ~27 requests a
second, whatever the API could take. So the window starts small and, like TCP's congestion
control (and Netflix's concurrency-limits AIMD), grows while answers come back clean and fast:
by one per answer at first (doubling each round trip, "slow start"), then by one per window's
worth of answers. It halves, at most once per round trip, on a sign of overload (429, 5xx, a
timeout or dropped connection), and shrinks by a tenth when answers take more than twice the
fastest recent round trip (a queue forming at the server) and 50 ms more. It never exceeds
``max_requests_in_flight`` (the ceiling) nor, in body bytes, ``max_bytes_in_flight``, and it
only grows while it is actually full, so a slow producer does not inflate it. The per-endpoint
rate limiter still paces requests underneath.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class AdaptiveWindow:
    """Slots for requests in flight; ``acquire`` before sending, ``release`` after the answer."""

    def __init__(self, ceiling: int, max_bytes: int, initial: int = 32) -> None:
        self.ceiling = ceiling
        self.max_bytes = max_bytes
        self.limit = float(min(initial, ceiling))
        self.peak = int(self.limit)  # the largest the window was, for the summary
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.slow_start = True
        self._recent: deque[float] = deque(maxlen=256)  # round trips of clean answers
        self._last_decrease = 0.0
        self._full_at = -1.0  # when the window was last full
        self._changed = threading.Condition()

    def acquire(self, size: int, timeout: float) -> bool:
        """Take a slot for a body of ``size`` bytes; False if none came free within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._fits(size), timeout)

    def _fits(self, size: int) -> bool:
        if self.in_flight >= int(self.limit):
            self._full_at = time.monotonic()  # requests are waiting: the window is the limit
            return False
        if self.in_flight and self.bytes_in_flight + size > self.max_bytes:
            return False  # one request may always go, however large
        self.in_flight += 1
        self.bytes_in_flight += size
        if self.in_flight >= int(self.limit):
            self._full_at = time.monotonic()
        return True

    def release(self, size: int) -> None:
        with self._changed:
            self.in_flight -= 1
            self.bytes_in_flight -= size
            self._changed.notify_all()

    def observe(self, round_trip: float, overloaded: bool) -> None:
        """One attempt's answer: how long it took, and whether it said the API is overloaded."""
        now = time.monotonic()
        with self._changed:
            fastest = min(self._recent) if self._recent else round_trip
            if overloaded:
                self._decrease(now, 0.5, fastest)
            elif round_trip > 2 * fastest and round_trip - fastest > 0.05:
                self._recent.append(round_trip)
                self._decrease(now, 0.9, fastest)
            else:
                self._recent.append(round_trip)
                if now - self._full_at < 1.0:  # grow only a window in use
                    step = 1.0 if self.slow_start else 1.0 / self.limit
                    self.limit = min(float(self.ceiling), self.limit + step)
                    self.peak = max(self.peak, int(self.limit))
            self._changed.notify_all()

    def _decrease(self, now: float, factor: float, round_trip: float) -> None:
        # Answers to one window's requests come back together: react once per round trip.
        if now - self._last_decrease < max(round_trip, 0.01):
            return
        self._last_decrease = now
        self.slow_start = False
        self.limit = max(1.0, self.limit * factor)
