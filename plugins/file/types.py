"""What each output format can hold, and the lossless conversions into it.

Encodings that only change how values are stored (dictionaries, run-end encoding) are decoded
for every format, since a dictionary with a null in it, a dictionary of dictionaries or of
string views cannot be written to Parquet. Types a format cannot hold at all are refused when
the job starts (``validate`` sees it too), naming the column and the type; see
docs/file-formats.md for the whole mapping.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.types as pat

from arrowbulk import SchemaError, children, decode, plain_type

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


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with its columns decoded to ``schema``'s types (a no-op when they match)."""
    if batch.schema.equals(schema):
        return batch
    columns = [
        decode(column, field.type) for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
