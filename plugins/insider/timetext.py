"""Timestamps and dates as the RFC 3339 texts in UTC that Insider's date-time fields take."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

#: Ticks of each Arrow time unit in a second.
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def rfc3339(values: pa.Array) -> pa.StringArray:
    """Timestamps and dates as RFC 3339 in UTC; a naive timestamp is taken as UTC."""
    if pat.is_date(values.type):
        return pc.binary_join_element_wise(values.cast(pa.string()), "T00:00:00Z", "")
    if pat.is_string(values.type) or pat.is_large_string(values.type):
        return values.cast(pa.string())
    unit = values.type.unit
    # Arrow stores zoned timestamps as UTC; dropping the zone keeps the UTC wall time.
    ticks = values.cast(pa.int64())
    if unit != "s":
        per_second = PER_SECOND[unit]
        whole = ticks.to_numpy(zero_copy_only=False)
        if not (np.nan_to_num(whole) % per_second).any():  # whole seconds: no fraction to trim
            ticks, unit = pc.divide(ticks, per_second), "s"
    naive = ticks.cast(pa.timestamp(unit))
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T")
    if unit != "s":
        text = pc.replace_substring_regex(text, r"\.0+$", "")
        text = pc.replace_substring_regex(text, r"(\.[0-9]*[1-9])0+$", r"\1")
    return pc.binary_join_element_wise(text, "Z", "")


#: Insider's date-time patterns (``schemas/insider``) that every text :func:`rfc3339` makes of a
#: time in the years 1 to 9999 matches: four digits of year, two of month, day, hour, minute
#: and second, fraction digits without trailing zeros, and Z. A column of such times needs no
#: texts to be checked against them (``tests/test_insider_validation.py`` holds the proof by
#: example, over every unit, both ends of the range and fractions).
RFC3339_FORMS = frozenset(
    {
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
    }
)

# 0001-01-01 and 10000-01-01 (UTC) in seconds since the epoch (as arrowbulk.jsonable's).
FIRST_SECOND, END_SECOND = -62_135_596_800, 253_402_300_800


def outside_four_digit_years(values: pa.Array) -> pa.BooleanArray:
    """Per row of timestamps or dates: is its UTC year outside 1..9999 (null where null)?"""
    if pat.is_date(values.type):
        days = values.cast(pa.date32()).cast(pa.int32())
        low, high = FIRST_SECOND // 86_400, END_SECOND // 86_400
        return pc.or_(pc.less(days, low), pc.greater_equal(days, high))
    unit = values.type.unit
    ticks = values.cast(pa.int64())  # Arrow keeps zoned timestamps in UTC
    if unit == "ns":  # nanoseconds since 1970 in 64 bits span the years 1677 to 2262 only
        return pc.not_equal(ticks, ticks)  # all false, null where null
    per_second = PER_SECOND[unit]
    low, high = FIRST_SECOND * per_second, END_SECOND * per_second
    return pc.or_(pc.less(ticks, low), pc.greater_equal(ticks, high))
