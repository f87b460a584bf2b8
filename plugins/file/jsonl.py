"""Record batches as JSON Lines: every value exact, in conventions that do not depend on what
else is installed (pandas, for one, changes what pyarrow's ``to_pylist`` returns).

Each column is first made *JSON-shaped* with Arrow (texts for timestamps, dates, times,
durations and decimals; base64 for bytes), so that ``to_pylist`` yields only JSON's own types;
rows are then encoded with orjson a slice at a time, which bounds memory by the slice, not the
batch. The conventions (docs/file-formats.md):

- timestamps: ISO 8601 with every digit of the column's unit (``2024-01-02T10:11:12.123456789``);
  naive ones as written, zoned ones in UTC with ``Z``; years outside 1-9999 are refused;
- dates ``YYYY-MM-DD``; times ``HH:MM:SS[.fraction]``; durations ISO 8601 (``PT90.5S``);
  month-day-nano intervals ``{"months", "days", "nanoseconds"}``;
- decimals as JSON strings (exact: ``"1.50"``); NaN and infinities as the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers);
- binary values as base64 strings; maps as arrays of ``{"key", "value"}`` objects;
- dictionaries and run-end encodings decoded.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson
import pyarrow as pa

from arrowbulk import JobError, NotJson, SchemaError, jsonable, non_finite

#: Rows encoded at a time: Python objects exist for this many rows only.
SLICE_ROWS = 1024

_NON_FINITE = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def json_lines(batch: pa.RecordBatch) -> Iterator[bytes]:
    """The batch's rows as JSON Lines, a slice of SLICE_ROWS rows per item."""
    names = batch.schema.names
    columns, special = [], {}
    for name, column in zip(names, batch.columns, strict=True):
        try:
            shaped = jsonable(column)
        except NotJson as problem:
            raise JobError(f"column {name!r}: {problem}") from None
        bad = non_finite(shaped)
        if bad is not None:
            special[name] = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        columns.append(shaped)
    shaped_batch = pa.RecordBatch.from_arrays(columns, names=names)
    option = orjson.OPT_APPEND_NEWLINE
    for start in range(0, batch.num_rows, SLICE_ROWS):
        rows = shaped_batch.slice(start, SLICE_ROWS).to_pylist()
        for name, positions in special.items():
            for position in positions[(positions >= start) & (positions < start + SLICE_ROWS)]:
                row = rows[int(position) - start]
                row[name] = _NON_FINITE.get(row[name], "NaN")
        yield b"".join(orjson.dumps(row, option=option) for row in rows)


def check_jsonl_types(schema: pa.Schema) -> None:
    """Refuse, when the job starts, the columns JSON Lines cannot hold (see :func:`jsonable`)."""
    problems = []
    for field in schema:
        try:
            jsonable(pa.nulls(0, field.type))
        except NotJson as problem:
            problems.append(f"{field.name}: {problem}")
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as error:
            problems.append(f"{field.name} ({field.type}): {error}")
    if problems:
        raise SchemaError(
            "out: these columns cannot be written as JSON Lines: " + "; ".join(problems)
        )
