"""``{type: columns, select | drop, cast, add}``: choose, type and add columns.

Applied in this order: ``select: [a, b]`` (only these, in this order) or ``drop: [c]``; then
``cast: {name: type}`` with ``string``, ``int64``, ``float64``, ``boolean`` (texts true/false,
yes/no, y/n, 1/0 in any case), ``date``, ``timestamp`` (ISO 8601 texts, or ``{type:
timestamp, format: '%d/%m/%Y %H:%M'}``), ``decimal(p,s)``; then ``add: {name: constant}``. A
row with a value that cannot be cast is set aside with its column and value: the output rejects
it (its reject file, or a stop before anything is sent when it does not skip invalid records).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk import ConfigError, FilterPlugin, FilterValueError, SetAside, load_schema, yes_no
from arrowbulk.plugins.file.csv_types import named_type


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
        filtered, aside = self.filter_rows(batch)
        if aside:
            first = aside[0]
            raise FilterValueError(first.column, first.position, first.value, first.problem)
        return filtered

    def filter_rows(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[SetAside]]:
        columns = []
        bad = np.zeros(batch.num_rows, dtype=bool)
        aside: list[SetAside] = []
        for name in self.keep:
            column = batch.column(name)
            if name in self.casts:
                target, fmt = self.casts[name]
                column, failed = _cast(column, target, fmt)
                if failed is not None:
                    fresh = failed & ~bad  # a row is set aside once, for its first column
                    aside += [
                        SetAside(
                            row,
                            name,
                            batch.column(name)[row].as_py(),
                            "cast",
                            _problem(target, fmt),
                        )
                        for row in np.flatnonzero(fresh).tolist()
                    ]
                    bad |= failed
            columns.append(column)
        columns += [pa.repeat(value, batch.num_rows) for value in self.added.values()]
        result = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        if aside:
            aside.sort(key=lambda a: a.position)
            result = result.filter(pa.array(~bad))
        return result, aside


def _problem(target: pa.DataType, fmt: str | None) -> str:
    if target == pa.bool_():
        return "is not a boolean (true/false, yes/no, y/n, 1/0)"
    return f"cannot be cast to {target}" + (f" with format {fmt!r}" if fmt else "")


def _cast(
    column: pa.Array, target: pa.DataType, fmt: str | None
) -> tuple[pa.Array, np.ndarray | None]:
    """The column cast, and a mask of the rows whose value could not be (None: all could)."""
    text = pat.is_string(column.type) or pat.is_large_string(column.type)
    if target == pa.bool_() and text:
        return _booleans(column)
    try:
        return _cast_all(column, target, fmt, text), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # The error path only: try each distinct value once, then cast the rest.
    distinct = pc.drop_null(pc.unique(column))
    failing = []
    for position in range(len(distinct)):
        try:
            _cast_all(distinct.slice(position, 1), target, fmt, text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            failing.append(position)
    failed = pc.is_in(column, value_set=distinct.take(pa.array(failing, pa.int64())))
    mask = pc.fill_null(failed, False).to_numpy(zero_copy_only=False)
    rest = pc.if_else(pa.array(mask), pa.scalar(None, column.type), column)
    return _cast_all(rest, target, fmt, text), mask


def _cast_all(column: pa.Array, target: pa.DataType, fmt: str | None, text: bool) -> pa.Array:
    if fmt is not None and text:
        return pc.strptime(column, format=fmt, unit="us").cast(target)
    return column.cast(target)


def _booleans(column: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    values, unknown = yes_no(column)
    if not pc.any(unknown).as_py():
        return values, None
    return values, unknown.to_numpy(zero_copy_only=False)
