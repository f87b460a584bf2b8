"""The steps a batch is encoded in: bounded rows and bytes, the same for every pass."""

from __future__ import annotations

import os
from collections.abc import Iterator

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


def steps(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch in slices of at most CHUNK_ROWS rows and about CHUNK_BYTES bytes."""
    rows = CHUNK_ROWS
    if batch.num_rows:
        per_row = batch.nbytes / batch.num_rows
        rows = max(1, min(rows, int(CHUNK_BYTES // max(per_row, 1))))
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)
