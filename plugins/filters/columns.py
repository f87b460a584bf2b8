"""``{type: columns, select | drop, cast, add}``: choose, type and add columns.

Applied in this order: ``select: [a, b]`` (only these, in this order) or ``drop: [c]``; then
``cast: {name: type}`` with ``string``, ``int64``, ``float64``, ``boolean`` (texts true/false,
yes/no, y/n, 1/0 in any case), ``date``, ``timestamp`` (ISO 8601 texts, or ``{type:
timestamp, format: '%d/%m/%Y %H:%M'}``), ``decimal(p,s)``; then ``add: {name: constant}``. A
value that cannot be cast stops the job naming its row, column and value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk import ConfigError, FilterPlugin, FilterValueError, load_schema
from arrowbulk.plugins.file.csv_types import named_type

_TRUE = ["true", "yes", "y", "1"]
_FALSE = ["false", "no", "n", "0"]


class ColumnsFilter(FilterPlugin):
    type_name = "columns"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("filters", "columns.json")

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        names = schema.names
        wanted = self.config.get("select")
        dropped = self.config.get("drop", [])
        for key, listed in (("select", wanted or []), ("drop", dropped)):
            unknown = [n for n in listed if n not in names]
            if unknown:
                raise ConfigError(
                    f"filters: columns.{key}: {', '.join(unknown)} not in the input ({', '.join(names)})"
                )
        self.keep = list(wanted) if wanted else [n for n in names if n not in dropped]
        self.casts: dict[str, tuple[pa.DataType, str | None]] = {}
        for name, spec in self.config.get("cast", {}).items():
            if name not in self.keep:
                raise ConfigError(f"filters: columns.cast.{name}: no such column after select/drop")
            kind, fmt = (
                (spec, None) if isinstance(spec, str) else (spec["type"], spec.get("format"))
            )
            self.casts[name] = (named_type(kind, f"filters: columns.cast.{name}"), fmt)
        self.added = {n: pa.scalar(v) for n, v in self.config.get("add", {}).items()}
        clash = [n for n in self.added if n in self.keep]
        if clash:
            raise ConfigError(f"filters: columns.add: {', '.join(clash)} already exist")
        fields = [schema.field(n) for n in self.keep]
        fields = [f.with_type(self.casts[f.name][0]) if f.name in self.casts else f for f in fields]
        fields += [pa.field(n, v.type) for n, v in self.added.items()]
        self.schema = pa.schema(fields)
        return self.schema

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        for name in self.keep:
            column = batch.column(name)
            if name in self.casts:
                column = _cast(column, *self.casts[name], name)
            columns.append(column)
        columns += [pa.repeat(value, batch.num_rows) for value in self.added.values()]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def _cast(column: pa.Array, target: pa.DataType, fmt: str | None, name: str) -> pa.Array:
    text = pat.is_string(column.type) or pat.is_large_string(column.type)
    if target == pa.bool_() and text:
        return _booleans(column, name)
    try:
        if fmt is not None and text:
            return pc.strptime(column, format=fmt, unit="us")
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise _first_bad(column, target, fmt, name, str(error)) from None


def _booleans(column: pa.Array, name: str) -> pa.Array:
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    truthy, falsy = pc.is_in(folded, pa.array(_TRUE)), pc.is_in(folded, pa.array(_FALSE))
    unknown = pc.and_(pc.is_valid(folded), pc.invert(pc.or_(truthy, falsy)))
    if pc.any(unknown).as_py():
        position = pc.index(unknown, True).as_py()
        raise FilterValueError(
            name,
            position,
            column[position].as_py(),
            "is not a boolean (true/false, yes/no, y/n, 1/0)",
        )
    return pc.if_else(pc.is_valid(folded), truthy, pa.nulls(len(column), pa.bool_()))


def _first_bad(
    column: pa.Array, target: pa.DataType, fmt: str | None, name: str, why: str
) -> FilterValueError:
    for position in range(len(column)):  # the error path only: find the value that failed
        value = column.slice(position, 1)
        try:
            pc.strptime(value, format=fmt, unit="us") if fmt else value.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return FilterValueError(name, position, value[0].as_py(), f"cannot be cast to {target}")
    return FilterValueError(name, 0, None, f"cannot be cast to {target}: {why}")
