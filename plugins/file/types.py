"""What each output format can hold, and the lossless conversions into it.

Encodings that only change how values are stored (dictionaries, run-end encoding) are decoded
for every format, since a dictionary with a null in it, a dictionary of dictionaries or of
string views cannot be written to Parquet. Types a format cannot hold at all are refused when
the job starts (``validate`` sees it too), naming the column and the type; see
docs/file-formats.md for the whole mapping.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.errors import SchemaError


def plain_type(data_type: pa.DataType) -> pa.DataType:
    """``data_type`` with every dictionary and run-end encoding replaced by its values' type."""
    if pat.is_dictionary(data_type):
        return plain_type(data_type.value_type)
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
        return decode(array.dictionary_decode(), target)
    return array.cast(target)  # nested dictionaries: Arrow casts them element-wise


#: Types Parquet has no place for (Arrow's writer refuses them).
_NOT_IN_PARQUET = {
    "interval": pat.is_interval,
    "union": pat.is_union,
}


def check_parquet_types(schema: pa.Schema) -> pa.Schema:
    """The schema the Parquet writer gets, or :class:`SchemaError` for what it cannot hold."""
    problems = []
    for field in schema:
        plain = plain_type(field.type)
        for name, test in _NOT_IN_PARQUET.items():
            if _anywhere(plain, test):
                problems.append(f"{field.name} ({field.type}: Parquet has no {name} type)")
    if problems:
        raise SchemaError(
            "out: these columns cannot be written to Parquet: "
            + "; ".join(problems)
            + ". Cast them first (e.g. in SQL: CAST(col AS VARCHAR)), or write arrow or jsonl"
        )
    return pa.schema([f.with_type(plain_type(f.type)) for f in schema], schema.metadata)


def _anywhere(data_type: pa.DataType, test: object) -> bool:
    assert callable(test)
    return bool(test(data_type)) or any(_anywhere(child, test) for child in children(data_type))


def children(data_type: pa.DataType) -> list[pa.DataType]:
    """The types directly inside a nested type (none for a flat one)."""
    if hasattr(data_type, "value_field"):
        return [data_type.value_field.type]
    if pat.is_map(data_type):
        return [data_type.key_type, data_type.item_type]
    if pat.is_struct(data_type) or pat.is_union(data_type):
        return [data_type.field(i).type for i in range(data_type.num_fields)]
    return []


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with its columns decoded to ``schema``'s types (a no-op when they match)."""
    if batch.schema.equals(schema):
        return batch
    columns = [
        decode(column, field.type) for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
