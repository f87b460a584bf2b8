"""Helpers on streams of record batches shared by inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


def rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream into batches of exactly ``size`` rows (the last one may be shorter).

    Readers cut where their format does (CSV blocks, row groups); a user's ``batch_size``
    should mean the same thing for every format. Slices are zero-copy; only batches that
    straddle a cut are concatenated.
    """
    if size < 1:
        raise ValueError("batch size must be at least 1")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(size - pending_rows, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            pending_rows += take
            offset += take
            if pending_rows == size:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)
