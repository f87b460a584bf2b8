"""The steps a batch is encoded in: bounded rows and bytes, the same for every pass."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

#: Rows encoded in one step. Larger steps amortise per-call overhead; smaller ones hold less
#: intermediate data (Arrow's pool keeps what a step freed). Measured (2M users, defaults,
#: loopback; rows/s and peak RSS, clean / wide-list shape): 16384: 315k / 350k rows/s,
#: 349 / 351 MB; 24576: 312k / 360k, 371 / 430 MB; 32768: 319k / 363k, 377 / 475 MB.
CHUNK_ROWS = int(os.environ.get("ARROWBULK_INSIDER_CHUNK_ROWS", "16384"))
#: ... and at most this many bytes of input per step, for wide rows (long arrays, big texts):
#: it bounds a step's memory, and keeps its JSON (up to ~6x the input, for escapes) under
#: the 2 GiB that Arrow's binary arrays address.
CHUNK_BYTES = 256 * 2**20


#: Rows checked in one step by the record check before sending: it makes no JSON texts, so
#: a step holds less and can be larger; its per-call costs were a sixth of it at 16384 (2M
#: users: 0.85 s at 16384 rows a step, 0.70 s at 65536; peak RSS is the send pass's).
CHECK_ROWS = int(os.environ.get("ARROWBULK_INSIDER_CHECK_ROWS", "65536"))


def steps(batch: pa.RecordBatch, most_rows: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    """The batch in slices of at most ``most_rows`` rows and about CHUNK_BYTES bytes."""
    rows = most_rows
    if batch.num_rows:
        per_row = batch.nbytes / batch.num_rows
        rows = max(1, min(rows, int(CHUNK_BYTES // max(per_row, 1))))
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


class Selected:
    """Rows picked from a batch's steps (with each one's place in the task), worked on in
    steps of their own: a few picked rows per 16k-row step would each pay a step's fixed
    costs (only_changed: 1% of users changed made day 2 15% slower that way)."""

    def __init__(self) -> None:
        self._parts: list[pa.RecordBatch] = []
        self._where: list[np.ndarray] = []

    def add(self, step: pa.RecordBatch, positions: np.ndarray, picked: np.ndarray) -> None:
        """Keep the ``picked`` rows of ``step`` (``positions``: its rows' places)."""
        if picked.any():
            self._parts.append(step.filter(pa.array(picked)))
            self._where.append(positions[picked])

    def __bool__(self) -> bool:
        return bool(self._parts)

    def steps(self) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """The kept rows, in steps, each with its rows' places in the task."""
        if not self._parts:
            return
        rows = pa.Table.from_batches(self._parts).combine_chunks().to_batches()[0]
        positions, done = np.concatenate(self._where), 0
        for step in steps(rows):
            yield step, positions[done : done + step.num_rows]
            done += step.num_rows
