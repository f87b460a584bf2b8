"""Arrow values in JSON's own types, exactly, whatever else is installed.

``to_pylist`` cannot give nanosecond timestamps without pandas, and gives pandas objects when
pandas is installed; JSON has no bytes, decimals, NaN or durations. :func:`jsonable` turns a
column, with Arrow, into one whose ``to_pylist`` yields only None, bool, int, float, str, lists
and dicts, in the conventions docs/file-formats.md lists: ISO 8601 texts for timestamps (every
digit of the unit; zoned ones in UTC with ``Z``; years outside 1-9999 refused), dates, times and
durations; decimals as exact texts; bytes as base64; maps as lists of ``{"key", "value"}``.
Floats stay floats, NaN and infinities included: the caller decides how to write those.
"""

from __future__ import annotations

import base64

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.arrow_types import children, decode, plain_type


class NotJson(ValueError):
    """A value that has no exact JSON form (the caller adds the column's name)."""


_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: 0001-01-01T00:00:00 and 10000-01-01T00:00:00, in seconds since the epoch.
FIRST_SECOND, END_SECOND = -62_135_596_800, 253_402_300_800


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


def non_finite(array: pa.Array) -> pa.BooleanArray | None:
    """Where a float column holds NaN or an infinity (JSON has no such numbers); None if nowhere."""
    if not pat.is_floating(array.type):
        return None
    bad = pc.fill_null(pc.invert(pc.is_finite(array)), False)
    return bad if pc.any(bad).as_py() else None


def _nested(array: pa.Array, where: str) -> pa.Array:
    shaped = jsonable(array)
    if non_finite(shaped) is not None:
        raise NotJson(f"NaN or an infinity inside {where} has no JSON form; replace them first")
    return shaped


def _needs_shaping(data_type: pa.DataType) -> bool:
    """Whether :func:`jsonable` changes values of this type."""
    return bool(jsonable(pa.nulls(0, data_type)).type != data_type)


def _timestamp_text(array: pa.Array) -> pa.Array:
    unit, zone = array.type.unit, array.type.tz
    per_second = _UNIT_PER_SECOND[unit]
    ticks = array.cast(pa.int64())
    low, high = pc.min_max(ticks).values()
    if low.is_valid and (
        low.as_py() < FIRST_SECOND * per_second or high.as_py() >= END_SECOND * per_second
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
