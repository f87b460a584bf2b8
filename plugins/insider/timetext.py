"""Timestamps and dates as the RFC 3339 texts in UTC that Insider's date-time fields take."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat


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
        per_second = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
        whole = ticks.to_numpy(zero_copy_only=False)
        if not (np.nan_to_num(whole) % per_second).any():  # whole seconds: no fraction to trim
            ticks, unit = pc.divide(ticks, per_second), "s"
    naive = ticks.cast(pa.timestamp(unit))
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T")
    if unit != "s":
        text = pc.replace_substring_regex(text, r"\.0+$", "")
        text = pc.replace_substring_regex(text, r"(\.[0-9]*[1-9])0+$", r"\1")
    return pc.binary_join_element_wise(text, "Z", "")
