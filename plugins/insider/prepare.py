"""Arrow columns turned into the values Insider will receive, column by column.

Every value gets its JSON text (``text``, without the surrounding quotes on the rows marked
``quoted``, which the encoder splices in with the key; null means "leave the key out", which
is what a null, NaN or infinity in the source means) and its typed value for validation (``strings``,
``numbers``, ``booleans``, ``string_lists``, ``number_lists``: each null where the row holds
another kind). Nothing here makes a Python object per row, except the rare array texts the
vectorized parser cannot split (see :mod:`arrays`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.plugins.insider.arrays import (
    NUMBER_LIST,
    STRING_LIST,
    WHITESPACE,
    parse_array_texts,
    parse_distinct_array_texts,
    select,
)
from arrowbulk.plugins.insider.columns import ColumnPlan, Kind
from arrowbulk.plugins.insider.splice import join_lists
from arrowbulk.plugins.insider.timetext import rfc3339

_CONTROL = r"[\x00-\x1f]"

# First bytes of a value that may be an array written as text: '[', ASCII white space, and
# any non-ASCII byte (Unicode white space such as U+0085 or U+3000 may come before the '[').
_ARRAY_START = np.zeros(256, dtype=bool)
_ARRAY_START[[ord(c) for c in "[" + WHITESPACE if ord(c) < 0x80]] = True
_ARRAY_START[0x80:] = True


def _data_bytes(values: pa.Array) -> np.ndarray:
    """The UTF-8 bytes behind a string array (all of them, for a slice too)."""
    buffer = values.buffers()[2]
    return np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)


def _first_bytes_in(values: pa.Array, table: np.ndarray) -> np.ndarray:
    """Per row: does the value's first byte fall in ``table``? (False for empty values.)"""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    data = _data_bytes(values)
    starts = offsets[:-1]
    found = np.zeros(len(values), dtype=bool)
    nonempty = offsets[1:] > starts
    found[nonempty] = table[data[starts[nonempty]]]
    return found


@dataclass(frozen=True)
class Prepared:
    name: str
    text: pa.StringArray  # JSON, but without its quotes on the rows where `quoted` holds
    quoted: bool | np.ndarray = False  # all rows, none, or a mask of rows
    strings: pa.StringArray | None = None
    numbers: pa.DoubleArray | None = None
    booleans: pa.BooleanArray | None = None
    string_lists: pa.ListArray | None = None
    number_lists: pa.ListArray | None = None
    errors: pa.StringArray | None = None  # why a value could not be read (a record error)
    error_rule: str = "array"  # the rule named when ``errors`` holds a row's reason
    integral: bool = False  # numbers came from an integer column
    #: A timestamp column's times (the texts are made of them): rules read them, not texts.
    times: pa.Array | None = None
    #: Patterns every string value matches (normalization found them all in form).
    forms: frozenset[str] = frozenset()
    #: Check-only columns (the record check before sending): ``text`` is then the typed values
    #: (their validity is the presence), and this makes the JSON text, for messages only.
    text_of: Callable[[], pa.StringArray] | None = field(default=None, compare=False)

    def present(self) -> pa.BooleanArray:
        """Rows where the column has a value to send."""
        return self._present

    @cached_property
    def _present(self) -> pa.BooleanArray:
        # Asked by every rule and by the encoder: computed once per batch and column.
        return pc.is_valid(self.text)

    def __len__(self) -> int:
        return len(self.text)

    def without(self, rows: np.ndarray) -> Prepared:
        """The same column with the values of ``rows`` (a mask) left out, as if null."""
        keep = pa.array(~rows)

        def masked(values: pa.Array | None) -> pa.Array | None:
            if values is None:
                return None
            return pc.if_else(keep, values, pa.scalar(None, values.type))

        return replace(
            self,
            text=masked(self.text),
            strings=masked(self.strings),
            numbers=masked(self.numbers),
            booleans=masked(self.booleans),
            string_lists=masked(self.string_lists),
            number_lists=masked(self.number_lists),
            errors=masked(self.errors),
        )

    def with_errors(self, errors: pa.StringArray, rule: str) -> Prepared:
        """Reasons a value could not be read before this column was prepared (they win)."""
        merged = errors if self.errors is None else pc.coalesce(errors, self.errors)
        return replace(self, errors=merged, error_rule=rule)

    @cached_property
    def json(self) -> pa.StringArray:
        """Each value's whole JSON text (for messages and the rare checks that parse it)."""
        text = self.text_of() if self.text_of is not None else self.text
        if self.quoted is False:
            return text
        quoted = pc.binary_join_element_wise('"', text, '"', "")
        if self.quoted is True:
            return quoted
        return pc.if_else(pa.array(self.quoted), quoted, text)


def prepare(column: ColumnPlan, values: pa.Array, check_only: bool = False) -> Prepared:
    """A column's JSON texts and typed values; ``check_only``: the typed values alone where
    the texts cost most (numbers, lists), for a check that sends nothing."""
    if pat.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = column.kind
    if kind is Kind.STRING:
        strings = values.cast(pa.string())
        if check_only:
            return Prepared(
                column.name, strings, True, strings=strings, text_of=lambda: escape_strings(strings)
            )
        return Prepared(column.name, escape_strings(strings), True, strings=strings)
    if kind is Kind.TEXT_OR_ARRAY:
        return _text_or_array(column.name, values.cast(pa.string()), check_only)
    if kind is Kind.BOOLEAN:
        return Prepared(column.name, values.cast(pa.string()), booleans=values)
    if kind in {Kind.INTEGER, Kind.NUMBER}:
        return _numbers(column.name, values, kind is Kind.INTEGER, check_only)
    if kind is Kind.TIMESTAMP:
        if pat.is_string(values.type) or pat.is_large_string(values.type):
            strings = rfc3339(values)
            return Prepared(column.name, escape_strings(strings), True, strings=strings)
        if check_only:  # the rules read the times (validate.py): texts for messages only
            return Prepared(
                column.name, values, True, times=values, text_of=lambda: rfc3339(values)
            )
        # Made from timestamps or dates: digits, '-', ':', '.', 'T', 'Z'; nothing to escape.
        strings = rfc3339(values)
        return Prepared(column.name, strings, True, strings=strings, times=values)
    return _lists(column.name, values, check_only)


def _numbers(name: str, values: pa.Array, integral: bool, check_only: bool) -> Prepared:
    # The doubles are only for checks (bounds, integrality); the text sent is exact, so
    # integers past 2**53 and decimals keep every digit.
    numbers = values.cast(pa.float64(), safe=False)
    finite = None
    if not integral:
        finite = pc.is_finite(numbers)  # NaN and infinities mean "no value", like null
        numbers = pc.if_else(finite, numbers, pa.scalar(None, pa.float64()))

    def text() -> pa.StringArray:
        digits = values.cast(pa.string())
        if finite is None:
            return digits
        return pc.if_else(finite, digits, pa.scalar(None, pa.string()))

    if check_only:
        return Prepared(name, numbers, numbers=numbers, integral=integral, text_of=text)
    return Prepared(name, text(), numbers=numbers, integral=integral)


def _text_or_array(name: str, strings: pa.Array, check_only: bool = False) -> Prepared:
    maybe = _first_bytes_in(strings, _ARRAY_START)
    if not maybe.any():  # no value can be an array: plain strings, no parsing at all
        if check_only:
            return Prepared(
                name, strings, True, strings=strings, text_of=lambda: escape_strings(strings)
            )
        return Prepared(name, escape_strings(strings), True, strings=strings)
    where = np.flatnonzero(maybe)
    if len(where) * 2 > len(strings):  # mostly arrays: parse every row, no gather and scatter
        parsed = parse_distinct_array_texts(strings)
        is_array = pc.fill_null(parsed.is_array, False)
        string_lists, number_lists = parsed.strings, parsed.numbers
        errors = parsed.errors
    else:
        parsed = parse_array_texts(strings.take(pa.array(where)))
        # Scatter the parsed subset back: row -> its position in the subset, null elsewhere.
        position = np.full(len(strings), -1, dtype=np.int64)
        position[where] = np.arange(len(where))
        back = pa.array(position, mask=position < 0)
        is_array = pc.fill_null(pc.take(parsed.is_array, back), False)
        string_lists, number_lists = pc.take(parsed.strings, back), pc.take(parsed.numbers, back)
        errors = pc.take(parsed.errors, back)
    plain = select(pc.invert(is_array), lambda: strings, pa.string())

    def text() -> pa.StringArray:
        lists = pc.coalesce(json_string_lists(string_lists), json_number_lists(number_lists))
        return pc.coalesce(lists, escape_strings(plain))

    if check_only:
        # The texts only for messages; present where a list or a plain string is.
        present = pc.or_(pc.or_(string_lists.is_valid(), number_lists.is_valid()), plain.is_valid())
        stand_in = pc.if_else(present, strings, pa.scalar(None, pa.string()))
    return Prepared(
        name,
        stand_in if check_only else text(),
        plain.is_valid().to_numpy(zero_copy_only=False),
        strings=plain,
        string_lists=string_lists,
        number_lists=number_lists,
        errors=errors,
        text_of=text if check_only else None,
    )


def _lists(name: str, values: pa.Array, check_only: bool) -> Prepared:
    if pat.is_large_list(values.type) or pat.is_fixed_size_list(values.type):
        values = values.cast(pa.list_(values.type.value_type))
    item = values.type.value_type
    if pat.is_dictionary(item):
        values = values.cast(pa.list_(item.value_type))
        item = item.value_type
    if pat.is_string(item) or pat.is_large_string(item):
        lists = values.cast(STRING_LIST)
        if check_only:
            return Prepared(
                name,
                lists,
                string_lists=lists,
                errors=_null_items(lists),
                text_of=lambda: json_string_lists(lists),
            )
        return Prepared(
            name, json_string_lists(lists), string_lists=lists, errors=_null_items(lists)
        )
    # Integers are sent as their own digits (exact past 2**53); the doubles are for checks.
    number_lists = values.cast(NUMBER_LIST, safe=False)
    lists = values if pat.is_integer(item) else number_lists
    if check_only:
        return Prepared(
            name,
            number_lists,
            number_lists=number_lists,
            errors=_null_items(number_lists),
            text_of=lambda: _json_lists(lists, json_numbers),
        )
    return Prepared(
        name,
        _json_lists(lists, json_numbers),
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
    mask = pc.is_in(
        pa.array(np.arange(len(lists), dtype=np.int64)), value_set=rows.cast(pa.int64())
    )
    return pc.if_else(
        mask,
        "an array holds a null or NaN element; remove it or the whole value",
        pa.scalar(None, pa.string()),
    )


def json_numbers(values: pa.Array) -> pa.StringArray:
    return values.cast(pa.string())


def escape_strings(values: pa.Array) -> pa.StringArray:
    """Each string escaped for JSON, without the quotes around it; nulls stay null."""
    if not _needs_escaping(values):
        return values  # the common case: nothing to escape
    escaped = pc.replace_substring(values, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if not pc.any(pc.match_substring_regex(escaped, _CONTROL)).as_py():
        return escaped
    for char, replacement in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, char, replacement)
    rare = pc.fill_null(pc.match_substring_regex(escaped, _CONTROL), False)
    if not pc.any(rare).as_py():
        return escaped
    # Other control characters need \u00XX escapes: rare enough for orjson, row by row.
    patched = escaped.to_pylist()
    for row in pc.indices_nonzero(rare).to_pylist():
        patched[row] = orjson.dumps(values[row].as_py()).decode()[1:-1]
    return pa.array(patched, pa.string())


def _needs_escaping(values: pa.Array) -> bool:
    """Any control character, '"' or '\\' in the values' bytes (only this slice's bytes)."""
    if len(values) == 0 or values.buffers()[2] is None:
        return False
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    data = _data_bytes(values)[offsets[values.offset] : offsets[values.offset + len(values)]]
    return bool((data < 0x20).any() or (data == 0x22).any() or (data == 0x5C).any())


def json_string_lists(lists: pa.ListArray) -> pa.StringArray:
    start, items = _own_items(lists)
    return _as_string(join_lists(lists, escape_strings(items), quoted=True, first_item=start))


def json_number_lists(lists: pa.ListArray) -> pa.StringArray:
    return _json_lists(lists, json_numbers)


def _json_lists(
    lists: pa.ListArray, item_json: Callable[[pa.Array], pa.StringArray]
) -> pa.StringArray:
    """``[item,item]`` per row from the items' JSON texts; a null list stays null."""
    start, items = _own_items(lists)
    return _as_string(join_lists(lists, item_json(items), quoted=False, first_item=start))


def _own_items(lists: pa.ListArray) -> tuple[int, pa.Array]:
    """The items a (sliced) list array's rows use, and where they start in ``lists.values``.

    ``lists.values`` of a slice is the whole child array: converting all of it for every
    slice cost a 200k-user job of 20-number lists 1.8 s (7 slices, 4.6M numbers each)."""
    offsets = np.frombuffer(lists.buffers()[1], np.int32)[
        lists.offset : lists.offset + len(lists) + 1
    ]
    if not len(offsets):
        return 0, lists.values.slice(0, 0)
    start, end = int(offsets[0]), int(offsets[-1])
    return start, lists.values.slice(start, end - start)


def _as_string(texts: pa.Array) -> pa.StringArray:
    # The pieces are valid UTF-8 and whole characters, so the view is safe and free.
    kind = pa.large_string() if pa.types.is_large_binary(texts.type) else pa.string()
    return pa.Array.from_buffers(kind, len(texts), texts.buffers(), texts.null_count)
