"""Arrays written as text, the way Treasure Data's connector takes them: ['a', 'b'] or [1, 2].

The common, simple forms are recognised and split with Arrow compute over the whole column;
anything else that starts with ``[`` goes through a small exact parser, one value at a time.
A value that is not a well-formed array of strings or of numbers (``['a', 1]``, ``[true]``,
``['a'``) gets an error message instead of a value: a record error, never a wrong value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SIMPLE_STRINGS = r"^\[\s*('[^'\\]*'(\s*,\s*'[^'\\]*')*)?\s*\]$"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SIMPLE_NUMBERS = rf"^\[\s*({_NUMBER}(\s*,\s*{_NUMBER})*)?\s*\]$"
_EMPTY = r"^\[\s*\]$"
_NUMBER_TOKEN = re.compile(_NUMBER)

#: White space as Python's ``str.strip()`` sees it (Arrow's utf8_trim_whitespace leaves out
#: \x1c-\x1f): a value is an array when, stripped of these, it starts with ``[``.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

STRING_LIST = pa.list_(pa.string())
NUMBER_LIST = pa.list_(pa.float64())


@dataclass(frozen=True)
class ParsedArrays:
    """Per row: a list of strings, a list of numbers, or an error (each null elsewhere)."""

    is_array: pa.BooleanArray  # the value starts with '[' (null where the value is null)
    strings: pa.ListArray  # list<string>
    numbers: pa.ListArray  # list<double>
    errors: pa.StringArray


#: Values sampled to decide whether a batch's column repeats a few values.
SAMPLE = 1024


def repeated(values: pa.Array) -> pa.DictionaryArray | None:
    """``values`` dictionary-encoded when they repeat a few values (codes, tag lists: a CRM
    writes a few combinations many times), for work done once per distinct value and taken
    back to the rows; None otherwise. The first SAMPLE values decide (at most 1 in 16
    distinct), so a column of distinct values (phones, ids) pays for a sample's hashes only."""
    if len(values) <= SAMPLE or len(pc.unique(values.slice(0, SAMPLE))) > SAMPLE // 16:
        return None
    encoded: pa.DictionaryArray = pc.dictionary_encode(values)
    return encoded


def parse_distinct_array_texts(texts: pa.Array) -> ParsedArrays:
    """:func:`parse_array_texts`, once per distinct text when the texts repeat (2M rows of
    30 tag texts: 0.33 s parsed row by row, 0.07 s this way)."""
    texts = texts.cast(pa.string())
    encoded = repeated(texts)
    if encoded is None:
        return parse_array_texts(texts)
    parsed = parse_array_texts(encoded.dictionary)
    indices = encoded.indices
    return ParsedArrays(
        pc.take(parsed.is_array, indices),
        pc.take(parsed.strings, indices),
        pc.take(parsed.numbers, indices),
        pc.take(parsed.errors, indices),
    )


def parse_array_texts(texts: pa.Array) -> ParsedArrays:
    texts = texts.cast(pa.string())
    trimmed = pc.utf8_trim(texts, WHITESPACE)
    is_array = pc.starts_with(trimmed, "[")
    inner = pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(trimmed, 1, -1))
    closed = pc.and_(is_array, pc.ends_with(trimmed, "]"))
    empty = pc.and_(closed, pc.equal(inner, ""))
    # Each regex runs on the rows its form may match; the others become a trivial "[]".
    quoted = pc.and_(closed, pc.starts_with(inner, "'"))
    simple_strings = pc.or_(empty, pc.and_(quoted, _matches(trimmed, quoted, _SIMPLE_STRINGS)))
    numeric = pc.and_(closed, pc.invert(pc.or_(quoted, empty)))
    simple_numbers = pc.and_(numeric, _matches(trimmed, numeric, _SIMPLE_NUMBERS))

    # A column holds one form as a rule: the other form's split is not computed at all.
    strings = select(simple_strings, lambda: _split_strings(inner, quoted, empty), STRING_LIST)
    numbers = select(simple_numbers, lambda: _split_numbers(inner, simple_numbers), NUMBER_LIST)
    errors = pa.nulls(len(texts), pa.string())

    # The rare forms: escapes, double quotes, odd spacing, and every malformed value.
    leftovers = pc.and_(is_array, pc.invert(pc.or_(simple_strings, simple_numbers)))
    leftover_rows = pc.indices_nonzero(pc.fill_null(leftovers, False)).to_pylist()
    if leftover_rows:
        strings, numbers, errors = _parse_slowly(texts, leftover_rows, strings, numbers, errors)
    return ParsedArrays(is_array, strings, numbers, errors)


def select(mask: pa.Array, compute: Callable[[], pa.Array], type_: pa.DataType) -> pa.Array:
    """``compute()`` where ``mask`` holds, null elsewhere; not computed at all when it never holds."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return pa.nulls(len(mask), type_)
    values = compute()
    return values if pc.all(mask).as_py() else pc.if_else(mask, values, pa.scalar(None, type_))


def _where(mask: pa.Array, values: pa.Array, other: pa.Scalar | str) -> pa.Array:
    """``if_else``, skipped when the mask is all true (the usual case: one array form per column)."""
    if pc.all(pc.fill_null(mask, False)).as_py():
        return values
    return pc.if_else(mask, values, other)


def _matches(texts: pa.Array, where: pa.Array, pattern: str) -> pa.Array:
    if not pc.any(pc.fill_null(where, False)).as_py():
        return pa.array(np.zeros(len(texts), dtype=bool))
    return pc.match_substring_regex(_where(where, texts, "[]"), pattern)


def _split_strings(inner: pa.Array, quoted: pa.Array, empty: pa.Array) -> pa.Array:
    """'a', 'b' -> [a, b]; a literal split on the usual "', '", a regex split where that misses."""
    body = pc.utf8_slice_codeunits(_where(quoted, inner, "''"), 1, -1)
    parts = pc.split_pattern(body, "', '")
    # Simple strings hold no quote, so a quote left in a part means a separator of other spacing.
    if pc.any(pc.match_substring(pc.list_flatten(parts), "'")).as_py():
        parts = pc.split_pattern_regex(body, r"'\s*,\s*'")
    empty_rows = pc.fill_null(empty, False).to_numpy(zero_copy_only=False)
    if not empty_rows.any():
        return parts
    return _emptied(parts, empty_rows)


def _emptied(lists: pa.ListArray, rows: np.ndarray) -> pa.ListArray:
    """``lists`` with the rows marked in ``rows`` made ``[]`` (an if_else on lists is slow)."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    keep = ~np.repeat(rows, lengths)
    offsets = np.concatenate([[0], np.cumsum(np.where(rows, 0, lengths))]).astype(np.int32)
    return pa.ListArray.from_arrays(
        pa.array(offsets), pc.list_flatten(lists).filter(pa.array(keep))
    )


def _split_numbers(inner: pa.Array, simple: pa.Array) -> pa.Array:
    parts = pc.split_pattern(_where(simple, inner, "0"), ",")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    return pa.ListArray.from_arrays(parts.offsets, flat.cast(pa.float64())).cast(NUMBER_LIST)


def _parse_slowly(
    texts: pa.Array, rows: list[int], strings: pa.Array, numbers: pa.Array, errors: pa.Array
) -> tuple[pa.Array, pa.Array, pa.Array]:
    size = len(texts)
    slow_strings: list[list[str] | None] = [None] * size
    slow_numbers: list[list[float] | None] = [None] * size
    slow_errors: list[str | None] = [None] * size
    for row in rows:
        text = texts[row].as_py()
        try:
            kind, values = parse_array_text(text)
        except ValueError as error:
            slow_errors[row] = str(error)
            continue
        if kind == "number":
            slow_numbers[row] = [float(v) for v in values]
        else:
            slow_strings[row] = [str(v) for v in values]
    return (
        pc.coalesce(strings, pa.array(slow_strings, STRING_LIST)),
        pc.coalesce(numbers, pa.array(slow_numbers, NUMBER_LIST)),
        pc.coalesce(errors, pa.array(slow_errors, pa.string())),
    )


def parse_array_text(text: str) -> tuple[str, list[str | float]]:
    """Parse one array written as text; return ("string" | "number", values) or raise ValueError."""
    source = text.strip()
    if not source.endswith("]"):
        raise ValueError(f"misformatted array {_show(text)}: it does not end with ']'")
    position = 1
    values: list[str | float] = []
    kinds: set[str] = set()
    length = len(source) - 1
    while True:
        position = _skip_spaces(source, position)
        if position == length:
            if values:
                raise ValueError(f"misformatted array {_show(text)}: a comma before ']'")
            break
        char = source[position]
        if char in "'\"":
            value, position = _read_quoted(source, position, text)
            kinds.add("string")
            values.append(value)
        else:
            match = _NUMBER_TOKEN.match(source, position)
            if match is None or match.end() == position:
                word = re.match(r"[^,\]\s]*", source[position:])
                found = word.group(0) if word else source[position]
                raise ValueError(
                    f"misformatted array {_show(text)}: {found!r} is neither a quoted string nor a "
                    "number (booleans, objects and nested arrays are not allowed)"
                )
            kinds.add("number")
            values.append(float(match.group(0)))
            position = match.end()
        position = _skip_spaces(source, position)
        if position == length:
            break
        if source[position] != ",":
            raise ValueError(
                f"misformatted array {_show(text)}: expected ',' at character {position + 1}"
            )
        position += 1
    if len(kinds) > 1:
        raise ValueError(
            f"mixed array {_show(text)}: Insider takes arrays of strings or of numbers, not both"
        )
    return (kinds.pop() if kinds else "string"), values


def _read_quoted(source: str, start: int, text: str) -> tuple[str, int]:
    quote, position = source[start], start + 1
    out: list[str] = []
    while position < len(source) - 1:
        char = source[position]
        if char == "\\" and position + 1 < len(source) - 1:
            out.append(_unescape(source[position + 1]))
            position += 2
            continue
        if char == quote:
            return "".join(out), position + 1
        out.append(char)
        position += 1
    raise ValueError(f"misformatted array {_show(text)}: a string is not closed")


def _unescape(char: str) -> str:
    return {"n": "\n", "t": "\t", "r": "\r"}.get(char, char)


def _skip_spaces(source: str, position: int) -> int:
    while position < len(source) and source[position].isspace():
        position += 1
    return position


def _show(text: str) -> str:
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)
