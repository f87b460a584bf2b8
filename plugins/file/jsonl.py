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

import base64
from collections.abc import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.errors import JobError, SchemaError
from arrowbulk.plugins.file.types import children, decode, plain_type

#: Rows encoded at a time: Python objects exist for this many rows only.
SLICE_ROWS = 1024

_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: 0001-01-01T00:00:00 and 10000-01-01T00:00:00, in seconds since the epoch.
_FIRST_SECOND, _END_SECOND = -62_135_596_800, 253_402_300_800
_NON_FINITE = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


class NotJson(ValueError):
    """A value JSON Lines cannot hold exactly (the caller adds the column's name)."""


def json_lines(batch: pa.RecordBatch) -> Iterator[bytes]:
    """The batch's rows as JSON Lines, a slice of SLICE_ROWS rows per item."""
    names = batch.schema.names
    columns, non_finite = [], {}
    for name, column in zip(names, batch.columns, strict=True):
        try:
            shaped = jsonable(column)
        except NotJson as problem:
            raise JobError(f"column {name!r}: {problem}") from None
        if pat.is_floating(shaped.type):
            bad = pc.fill_null(pc.invert(pc.is_finite(shaped)), False)
            if pc.any(bad).as_py():
                non_finite[name] = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        columns.append(shaped)
    shaped_batch = pa.RecordBatch.from_arrays(columns, names=names)
    option = orjson.OPT_APPEND_NEWLINE
    for start in range(0, batch.num_rows, SLICE_ROWS):
        rows = shaped_batch.slice(start, SLICE_ROWS).to_pylist()
        for name, positions in non_finite.items():
            for position in positions[(positions >= start) & (positions < start + SLICE_ROWS)]:
                row = rows[int(position) - start]
                row[name] = _NON_FINITE.get(row[name], "NaN")
        yield b"".join(orjson.dumps(row, option=option) for row in rows)


def jsonable(array: pa.Array) -> pa.Array:
    """``array`` with every value in a type whose Python form is JSON's own."""
    array = decode(array, plain_type(array.type))
    kind = array.type
    if pat.is_timestamp(kind):
        return _timestamp_text(array)
    if pat.is_date(kind) or pat.is_time(kind) or pat.is_decimal(kind):
        return array.cast(pa.string())
    if pat.is_duration(kind):
        return _duration_text(array)
    if kind == pa.month_day_nano_interval():
        return pa.array(
            [
                None
                if v is None
                else {"months": v.months, "days": v.days, "nanoseconds": v.nanoseconds}
                for v in array.to_pylist()
            ],
            pa.struct([("months", pa.int32()), ("days", pa.int32()), ("nanoseconds", pa.int64())]),
        )
    if (
        pat.is_binary(kind)
        or pat.is_large_binary(kind)
        or pat.is_fixed_size_binary(kind)
        or pat.is_binary_view(kind)
    ):
        return pa.array(
            [None if v is None else base64.b64encode(v).decode("ascii") for v in array.to_pylist()],
            pa.string(),
        )
    if pat.is_string_view(kind):
        return array.cast(pa.string())
    if kind == pa.float16():
        return array.cast(pa.float64())
    if pat.is_fixed_size_list(kind) or pat.is_list_view(kind):
        return jsonable(array.cast(pa.list_(kind.value_field)))
    if pat.is_list(kind) or pat.is_large_list(kind):
        offsets, values = _rebased(array)
        builder = pa.LargeListArray if pat.is_large_list(kind) else pa.ListArray
        return builder.from_arrays(offsets, _nested(values, "a list"), mask=array.is_null())
    if pat.is_map(kind):
        offsets, entries = _rebased(array)
        pairs = pa.StructArray.from_arrays(
            [_nested(entries.field(0), "a map"), _nested(entries.field(1), "a map")],
            ["key", "value"],
        )
        return pa.ListArray.from_arrays(offsets, pairs, mask=array.is_null())
    if pat.is_struct(kind):
        fields = [_nested(array.field(i), "a struct") for i in range(kind.num_fields)]
        names = [kind.field(i).name for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(fields, names, mask=array.is_null())
    if pat.is_union(kind) and any(_needs_shaping(child) for child in children(kind)):
        raise NotJson(f"a union ({kind}) of types that need conversion is not supported")
    if pat.is_interval(kind):
        raise NotJson(f"{kind} values have no JSON form here; cast them in the query")
    return array


def _rebased(array: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A list array's offsets from 0 (a new buffer) and just the values they cover: Arrow
    cannot rebuild a list from sliced offsets with a null mask."""
    offsets = array.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    return pc.subtract(offsets, first), array.values.slice(first, last - first)


def _nested(array: pa.Array, where: str) -> pa.Array:
    shaped = jsonable(array)
    if pat.is_floating(shaped.type):
        bad = pc.fill_null(pc.invert(pc.is_finite(shaped)), False)
        if pc.any(bad).as_py():
            raise NotJson(f"NaN or an infinity inside {where} has no JSON form; replace them first")
    return shaped


def _needs_shaping(data_type: pa.DataType) -> bool:
    return jsonable_type_changes(data_type) or any(_needs_shaping(c) for c in children(data_type))


def jsonable_type_changes(data_type: pa.DataType) -> bool:
    flat_ok = (
        pat.is_null(data_type)
        or pat.is_boolean(data_type)
        or pat.is_integer(data_type)
        or pat.is_string(data_type)
        or pat.is_large_string(data_type)
        or data_type in (pa.float32(), pa.float64())
    )
    return not flat_ok and not children(data_type)


def _timestamp_text(array: pa.Array) -> pa.Array:
    unit, zone = array.type.unit, array.type.tz
    per_second = _UNIT_PER_SECOND[unit]
    ticks = array.cast(pa.int64())
    low, high = pc.min_max(ticks).values()
    if low.is_valid and (
        low.as_py() < _FIRST_SECOND * per_second or high.as_py() >= _END_SECOND * per_second
    ):
        raise NotJson(
            "a timestamp outside the years 1-9999 has no ISO 8601 form (DuckDB's 'infinity' is "
            "the largest timestamp); filter it out or cast it to text in the query"
        )
    if zone:
        array = array.cast(pa.timestamp(unit, "UTC"))
    text = pc.strftime(array, "%Y-%m-%dT%H:%M:%S")
    return pc.binary_join_element_wise(text, "Z", "") if zone else text


def _duration_text(array: pa.Array) -> pa.Array:
    per_second = _UNIT_PER_SECOND[array.type.unit]
    ticks = array.cast(pa.int64())
    negative = pc.less(ticks, 0)
    magnitude = pc.abs_checked(ticks)
    seconds = pc.divide(magnitude, per_second)
    parts = [pc.if_else(negative, "-PT", "PT"), seconds.cast(pa.string())]
    if per_second > 1:
        fraction = pc.subtract(magnitude, pc.multiply(seconds, per_second))
        digits = len(str(per_second)) - 1
        parts += [".", pc.utf8_lpad(fraction.cast(pa.string()), digits, "0")]
    return pc.binary_join_element_wise(*parts, "S", "")


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
