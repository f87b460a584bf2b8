"""Arrow types without their encodings: what a value is, apart from how it is stored.

Dictionaries and run-end encodings only change how values are stored; outputs that cannot hold
them (Parquet, for a dictionary with a null in it) get the decoded values instead.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat


def plain_type(data_type: pa.DataType) -> pa.DataType:
    """``data_type`` with every dictionary and run-end encoding replaced by its values' type."""
    if pat.is_dictionary(data_type):
        return plain_type(data_type.value_type)
    if pat.is_string_view(data_type):
        return pa.string()  # Arrow's kernels (take, for one) do not all take views yet
    if pat.is_binary_view(data_type):
        return pa.binary()
    if pat.is_run_end_encoded(data_type):
        return plain_type(data_type.value_type)
    if pat.is_list(data_type) or pat.is_large_list(data_type) or pat.is_list_view(data_type):
        item = data_type.value_field
        kind = type(data_type)
        inner = item.with_type(plain_type(item.type))
        if kind is pa.LargeListType:
            return pa.large_list(inner)
        if pat.is_list_view(data_type):
            return pa.list_view(inner)
        return pa.list_(inner)
    if pat.is_fixed_size_list(data_type):
        item = data_type.value_field
        return pa.list_(item.with_type(plain_type(item.type)), data_type.list_size)
    if pat.is_struct(data_type):
        return pa.struct([f.with_type(plain_type(f.type)) for f in data_type])
    if pat.is_map(data_type):
        return pa.map_(
            data_type.key_field.with_type(plain_type(data_type.key_type)),
            data_type.item_field.with_type(plain_type(data_type.item_type)),
        )
    return data_type


def decode(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``array`` as ``target`` (its :func:`plain_type`): the same values, decoded."""
    if array.type == target:
        return array
    if isinstance(array, pa.ChunkedArray):
        return pa.chunked_array([decode(chunk, target) for chunk in array.chunks], target)
    if pat.is_run_end_encoded(array.type):
        return decode(pc.run_end_decode(array), target)
    if pat.is_dictionary(array.type):
        values = decode(array.dictionary, plain_type(array.type.value_type))
        return decode(
            pa.DictionaryArray.from_arrays(array.indices, values).dictionary_decode(), target
        )
    return array.cast(target)  # nested dictionaries: Arrow casts them element-wise


def children(data_type: pa.DataType) -> list[pa.DataType]:
    """The types directly inside a nested type (none for a flat one)."""
    if hasattr(data_type, "value_field"):
        return [data_type.value_field.type]
    if pat.is_map(data_type):
        return [data_type.key_type, data_type.item_type]
    if pat.is_struct(data_type) or pat.is_union(data_type):
        return [data_type.field(i).type for i in range(data_type.num_fields)]
    return []


#: The texts a yes/no value may be written as (compared trimmed, in any case).
TRUE_TEXTS = ("true", "yes", "y", "1")
FALSE_TEXTS = ("false", "no", "n", "0")


def yes_no(texts: pa.Array) -> tuple[pa.BooleanArray, pa.BooleanArray]:
    """Texts read as booleans (``true``/``yes``/``y``/``1`` and their opposites, trimmed, any
    case), and per row whether a non-null text was none of those (then the boolean is null)."""
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(texts))
    truthy = pc.is_in(folded, pa.array(TRUE_TEXTS))
    falsy = pc.is_in(folded, pa.array(FALSE_TEXTS))
    unreadable = pc.and_(pc.is_valid(texts), pc.invert(pc.or_(truthy, falsy)))
    readable = pc.and_(pc.is_valid(texts), pc.invert(unreadable))
    return pc.if_else(readable, truthy, pa.scalar(None, pa.bool_())), unreadable
