"""Arrow columns turned into the values Insider will receive, column by column.

Every value gets its JSON text (``json``: null means "leave the key out", which is what a
null, NaN or infinity in the source means) and its typed value for validation (``strings``,
``numbers``, ``booleans``, ``string_lists``, ``number_lists``: each null where the row holds
another kind). Nothing here makes a Python object per row, except the rare array texts the
vectorized parser cannot split (see :mod:`arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.plugins.insider.arrays import NUMBER_LIST, STRING_LIST, parse_array_texts
from arrowbulk.plugins.insider.columns import ColumnPlan, Kind

_CONTROL = r"[\x00-\x1f]"


@dataclass(frozen=True)
class Prepared:
    name: str
    json: pa.StringArray
    strings: pa.StringArray | None = None
    numbers: pa.DoubleArray | None = None
    booleans: pa.BooleanArray | None = None
    string_lists: pa.ListArray | None = None
    number_lists: pa.ListArray | None = None
    errors: pa.StringArray | None = None  # why a value could not be read (a record error)
    integral: bool = False  # numbers came from an integer column

    def present(self) -> pa.BooleanArray:
        """Rows where the column has a value to send."""
        return pc.is_valid(self.json)


def prepare(column: ColumnPlan, values: pa.Array) -> Prepared:
    if pat.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = column.kind
    if kind is Kind.STRING:
        strings = values.cast(pa.string())
        return Prepared(column.name, json_strings(strings), strings=strings)
    if kind is Kind.TEXT_OR_ARRAY:
        return _text_or_array(column.name, values.cast(pa.string()))
    if kind is Kind.BOOLEAN:
        return Prepared(column.name, values.cast(pa.string()), booleans=values)
    if kind in {Kind.INTEGER, Kind.NUMBER}:
        return _numbers(column.name, values, integral=kind is Kind.INTEGER)
    if kind is Kind.TIMESTAMP:
        strings = rfc3339(values)
        return Prepared(column.name, json_strings(strings), strings=strings)
    return _lists(column.name, values)


def _numbers(name: str, values: pa.Array, integral: bool) -> Prepared:
    # The doubles are only for checks (bounds, integrality); the text sent is exact, so
    # integers past 2**53 and decimals keep every digit.
    numbers = values.cast(pa.float64(), safe=False)
    text = values.cast(pa.string())
    if not integral:
        finite = pc.is_finite(numbers)  # NaN and infinities mean "no value", like null
        numbers = pc.if_else(finite, numbers, pa.scalar(None, pa.float64()))
        text = pc.if_else(finite, text, pa.scalar(None, pa.string()))
    return Prepared(name, text, numbers=numbers, integral=integral)


def _text_or_array(name: str, strings: pa.Array) -> Prepared:
    parsed = parse_array_texts(strings)
    is_array = pc.fill_null(parsed.is_array, False)
    plain = pc.if_else(is_array, pa.scalar(None, pa.string()), strings)
    list_json = pc.coalesce(json_string_lists(parsed.strings), json_number_lists(parsed.numbers))
    return Prepared(
        name,
        pc.coalesce(json_strings(plain), list_json),
        strings=plain,
        string_lists=parsed.strings,
        number_lists=parsed.numbers,
        errors=parsed.errors,
    )


def _lists(name: str, values: pa.Array) -> Prepared:
    if pat.is_large_list(values.type) or pat.is_fixed_size_list(values.type):
        values = values.cast(pa.list_(values.type.value_type))
    item = values.type.value_type
    if pat.is_dictionary(item):
        values = values.cast(pa.list_(item.value_type))
        item = item.value_type
    if pat.is_string(item) or pat.is_large_string(item):
        lists = values.cast(STRING_LIST)
        return Prepared(
            name, json_string_lists(lists), string_lists=lists, errors=_null_items(lists)
        )
    lists = values.cast(NUMBER_LIST) if not pat.is_integer(item) else values
    number_lists = values.cast(NUMBER_LIST, safe=False)
    return Prepared(
        name,
        _json_lists(lists, json_numbers(lists.values)),
        number_lists=number_lists,
        errors=_null_items(number_lists),
    )


def _null_items(lists: pa.ListArray) -> pa.StringArray | None:
    """A null or NaN inside an array cannot be sent (Insider refuses mixed arrays)."""
    flat = pc.list_flatten(lists)
    bad = pc.invert(pc.is_valid(flat))
    if pat.is_floating(flat.type):
        bad = pc.or_(bad, pc.invert(pc.fill_null(pc.is_finite(flat), True)))
    if not pc.any(bad).as_py():
        return None
    parents = pc.list_parent_indices(lists)
    rows = pc.unique(pc.filter(parents, bad))
    mask = pc.is_in(pa.array(range(len(lists)), pa.int64()), value_set=rows.cast(pa.int64()))
    return pc.if_else(
        mask,
        "an array holds a null or NaN element; remove it or the whole value",
        pa.scalar(None, pa.string()),
    )


def json_numbers(values: pa.Array) -> pa.StringArray:
    return values.cast(pa.string())


def json_strings(values: pa.Array) -> pa.StringArray:
    """Quote and escape each string as JSON; nulls stay null."""
    escaped = pc.replace_substring(values, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if pc.any(pc.match_substring_regex(escaped, _CONTROL)).as_py():
        for char, replacement in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            escaped = pc.replace_substring(escaped, char, replacement)
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    rare = pc.fill_null(pc.match_substring_regex(quoted, _CONTROL), False)
    if not pc.any(rare).as_py():
        return quoted
    # Other control characters need \u00XX escapes: rare enough for orjson, row by row.
    patched = quoted.to_pylist()
    for row in pc.indices_nonzero(rare).to_pylist():
        patched[row] = orjson.dumps(values[row].as_py()).decode()
    return pa.array(patched, pa.string())


def json_string_lists(lists: pa.ListArray) -> pa.StringArray:
    return _json_lists(lists, json_strings(lists.values))


def json_number_lists(lists: pa.ListArray) -> pa.StringArray:
    return _json_lists(lists, json_numbers(lists.values))


def _json_lists(lists: pa.ListArray, item_json: pa.StringArray) -> pa.StringArray:
    """``[item,item]`` per row from the items' JSON texts; a null list stays null."""
    # ``offsets`` of a sliced ListArray point into the whole ``values``, which is what
    # ``item_json`` was computed from, so slices (batches cut by rebatch) need no copy.
    rebuilt = pa.ListArray.from_arrays(lists.offsets, item_json)
    joined = pc.binary_join_element_wise("[", pc.binary_join(rebuilt, ","), "]", "")
    return pc.if_else(pc.is_valid(lists), joined, pa.scalar(None, pa.string()))


def rfc3339(values: pa.Array) -> pa.StringArray:
    """Timestamps and dates as RFC 3339 in UTC; a naive timestamp is taken as UTC."""
    if pat.is_date(values.type):
        return pc.binary_join_element_wise(values.cast(pa.string()), "T00:00:00Z", "")
    if pat.is_string(values.type) or pat.is_large_string(values.type):
        return values.cast(pa.string())
    unit = values.type.unit
    # Arrow stores zoned timestamps as UTC; dropping the zone keeps the UTC wall time.
    naive = values.cast(pa.int64()).cast(pa.timestamp(unit))
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T")
    if unit != "s":
        text = pc.replace_substring_regex(text, r"\.0+$", "")
        text = pc.replace_substring_regex(text, r"(\.[0-9]*[1-9])0+$", r"\1")
    return pc.binary_join_element_wise(text, "Z", "")
