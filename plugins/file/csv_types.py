"""CSV column types that never change a value.

Arrow's CSV reader infers a type per column from the first block; as numbers, ``01234``
becomes 1234 and ``+905321234567`` a float. So a column inferred as a number stays text when
its sample holds a text the number would not give back: a leading zero, a leading ``+``, or
more significant digits than the type keeps (15 for float64, 18 for int64). Later blocks are
read as text too and checked the same way before the cast; a value that would change there
stops the job naming its row and column, and ``csv: {column_types: {zip: string}}`` settles
it. Types named in ``column_types`` are used as given.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk import ConfigError, JobError

#: Number texts that the number gives back (apart from the exponent's spelling).
_INTEGER = r"^-?(0|[1-9][0-9]{0,17})$"
_FLOAT = r"^-?(0|[1-9][0-9]*)(\.[0-9]*)?([eE][-+]?[0-9]+)?$"
_SIGNIFICANT_FLOAT_DIGITS = 15
_NUMBER_LIKE = re.compile(r"^\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*$")

_NAMED = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def named_type(name: str, key: str) -> pa.DataType:
    """A type named in a config (``string``, ``int64``, ``decimal(10,2)``, ...)."""
    if name in _NAMED:
        return _NAMED[name]
    match = _DECIMAL.match(name)
    if match and 1 <= int(match.group(1)) <= 38 and int(match.group(2)) <= int(match.group(1)):
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ConfigError(
        f"{key}: unknown type {name!r}; use one of {', '.join(_NAMED)} or decimal(p,s)"
    )


def is_number(data_type: pa.DataType) -> bool:
    return bool(pat.is_integer(data_type) or pat.is_floating(data_type))


def changed_texts(texts: pa.Array, data_type: pa.DataType) -> pa.Array:
    """A boolean mask: the texts that ``data_type`` would not give back (nulls are fine)."""
    pattern = _INTEGER if pat.is_integer(data_type) else _FLOAT
    bad = pc.invert(pc.match_substring_regex(texts, pattern))
    if pat.is_floating(data_type):
        mantissa = pc.replace_substring_regex(texts, r"[eE].*$", "")
        significant = pc.replace_substring_regex(mantissa, r"^-?[0.]*", "")
        digits = pc.utf8_length(pc.replace_substring_regex(significant, r"[^0-9]", ""))
        bad = pc.or_(bad, pc.greater(digits, _SIGNIFICANT_FLOAT_DIGITS))
    return pc.fill_null(bad, False)


def safe_inferred(inferred: pa.Schema, texts: pa.Table) -> pa.Schema:
    """``inferred``, with number columns whose sample would change kept as text."""
    fields = []
    for field in inferred:
        if (
            is_number(field.type)
            and pc.any(changed_texts(texts.column(field.name), field.type)).as_py()
        ):
            field = field.with_type(pa.string())
        fields.append(field)
    return pa.schema(fields)


def cast_checked(
    texts: pa.Array, data_type: pa.DataType, where: str, column: str, first_row: int
) -> pa.Array:
    """Cast a text column to a number type, refusing any text the number would change."""
    bad = changed_texts(texts, data_type)
    if pc.any(bad).as_py():
        position = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        value = texts[position].as_py()
        why = (
            "would change as {kind} (a leading zero or +, or more digits than it keeps)"
            if _NUMBER_LIKE.match(value)
            else "is not an {kind} (the type inferred from the file's first rows)"
        )
        raise JobError(
            f"{where}, row {first_row + position}, column {column}: {value!r} "
            + why.format(kind=data_type)
            + f"; read the column as text with in.csv.column_types: {{{column}: string}}"
        )
    try:
        return texts.cast(data_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise JobError(f"{where}, column {column}: {error}") from None
