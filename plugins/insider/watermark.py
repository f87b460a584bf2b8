"""A task's resume watermark: below it every row is settled; above it, how many are in doubt.

A row is *settled* once its fate is final: accepted by Insider, or rejected (by validation, a
filter or the server) and written to the reject file. The watermark is the lowest row that is
not: the lowest row of a request still unanswered, of the builder's pending records, or the
first row not yet queued. A resume skips the rows below it. Rows *in doubt* are those at or
above it in requests already handed to the network: a crash may have delivered them, so a
resume may send them again; the state records how many, as the bound of what is resent.

Thread-safe: the task thread records what it queues; delivery threads record requests going
out and answers coming back. A snapshot is never higher than the truth: each figure is
recorded after the change it describes, so a reader can only see an older, lower watermark.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Position:
    settled: int  # rows [0, settled) are settled
    in_doubt: int  # rows at or above `settled` already sent, unanswered


class Watermark:
    def __init__(self, tracked: bool = True) -> None:
        #: Keep the rows of requests going out (only needed when a resume state is kept).
        self.tracked = tracked
        self._lock = threading.Lock()
        self._queued_through = 0  # rows [0, n) are queued, sent or rejected
        self._pending_first: int | None = None  # the builder's lowest waiting row, as last seen
        self._unsettled: dict[int, int] = {}  # request key -> its lowest row
        # request key -> (its rows, their highest, their lowest), for requests that went out
        # and still have rows at or above the watermark
        self._out: dict[int, tuple[np.ndarray, int, int]] = {}

    def skip(self, rows: int) -> None:
        """Rows [0, rows) were settled by an earlier run."""
        with self._lock:
            self._queued_through = rows

    def queued(
        self,
        requests: Iterable[tuple[int, np.ndarray]],
        pending_first: int | None,
        queued_through: int | None = None,
    ) -> None:
        """Requests (key, rows) were closed; the builder's lowest waiting row is now
        ``pending_first``; rows below ``queued_through`` are all queued or rejected."""
        with self._lock:
            self._pending_first = pending_first
            for key, rows in requests:
                self._unsettled[key] = int(rows.min())
            if queued_through is not None:
                self._queued_through = queued_through

    def going_out(self, key: int, rows: np.ndarray) -> None:
        """A request is about to be sent: from here on a crash may have delivered it."""
        if not self.tracked:
            return
        with self._lock:
            self._out[key] = (rows, int(rows.max()), int(rows.min()))

    def answered(self, key: int) -> None:
        """A request's every row is settled (accepted, or rejected and written)."""
        with self._lock:
            self._unsettled.pop(key, None)

    def position(self) -> Position:
        with self._lock:
            candidates = [self._queued_through, *self._unsettled.values()]
            if self._pending_first is not None:
                candidates.append(self._pending_first)
            settled = min(candidates)
            in_doubt = 0
            for key, (rows, highest, lowest) in list(self._out.items()):
                if highest < settled:
                    del self._out[key]  # wholly settled: forget it
                elif lowest >= settled:
                    in_doubt += len(rows)  # wholly above: no need to look at each row
                else:
                    in_doubt += int(np.count_nonzero(rows >= settled))
        return Position(settled, in_doubt)
