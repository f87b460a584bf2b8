"""Incremental runs: read only the rows after the previous run's last record.

``in: {..., incremental: {columns: [updated_at, id], last_record: [...]}}``. Rows are
ordered by the columns together (a tie on ``updated_at`` is broken by ``id``); a run reads the
rows strictly after ``last_record`` and the config diff it leaves records the greatest row it
read as the next ``last_record`` (Embulk's config diff). Inputs push the condition down where
they can (a WHERE around the sql query, Parquet row groups skipped by their statistics); the
host applies it to every row anyway (:class:`IncrementalInput`), so a coarse pushdown cannot
let an old row through.

Loud, not lossy: a row with a null in an incremental column cannot be placed after any record
(a WHERE would skip it forever), so it stops the job, naming the column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk.errors import ConfigError, JobError, SchemaError
from arrowbulk.spi import InputPlugin


@dataclass(frozen=True)
class Incremental:
    columns: tuple[str, ...]
    #: The previous run's greatest row (as the config diff wrote it), or None: read everything.
    last_record: tuple[Any, ...] | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Incremental | None:
        section = config.get("incremental")
        if not section:
            return None
        columns = tuple(section["columns"])
        last = section.get("last_record")
        if last is not None and len(last) != len(columns):
            raise ConfigError(
                f"in.incremental.last_record: {len(last)} value(s) for {len(columns)} column(s) "
                f"({', '.join(columns)}); the config diff and the columns disagree: fix the diff "
                "or delete it to read everything again"
            )
        return cls(columns, tuple(last) if last is not None else None)

    def check(self, schema: pa.Schema) -> None:
        for name in self.columns:
            if name not in schema.names:
                raise SchemaError(
                    f"in.incremental.columns: {name} is not a column of the input "
                    f"({', '.join(schema.names)})"
                )
            kind = schema.field(name).type
            if not _orderable(kind):
                raise SchemaError(
                    f"in.incremental.columns: {name} is {kind}, which has no order; use a "
                    "timestamp, date, number or text column"
                )

    def typed_last(self, schema: pa.Schema) -> list[pa.Scalar] | None:
        """``last_record`` as Arrow scalars of the columns' types."""
        if self.last_record is None:
            return None
        return [
            _scalar(value, schema.field(name).type, name)
            for name, value in zip(self.columns, self.last_record, strict=True)
        ]

    def after(self, batch: pa.RecordBatch | pa.Table, last: Sequence[pa.Scalar]) -> pa.Array:
        """Per row: is it strictly after ``last``, comparing the columns in order?"""
        result: pa.Array | None = None
        for name, value in reversed(list(zip(self.columns, last, strict=True))):
            column = batch.column(name)
            greater = pc.greater(column, value)
            if result is None:
                result = greater
            else:
                result = pc.or_(greater, pc.and_(pc.equal(column, value), result))
        assert result is not None
        return pc.fill_null(result, False)

    def sql_condition(self, schema: pa.Schema, quote: Any) -> str | None:
        """The same condition in SQL (for inputs that push it down), or None: no last record."""
        last = self.typed_last(schema)
        if last is None:
            return None
        condition = ""
        for name, value in reversed(list(zip(self.columns, last, strict=True))):
            literal, column = sql_literal(value), quote(name)
            greater = f"{column} > {literal}"
            condition = (
                greater
                if not condition
                else f"({greater} OR ({column} = {literal} AND {condition}))"
            )
        return condition


class Tracker:
    """The greatest row read, by the incremental columns; thread-safe (tasks read at once)."""

    def __init__(self, incremental: Incremental) -> None:
        self.incremental = incremental
        self._lock = threading.Lock()
        self._last: tuple[Any, ...] | None = None

    def see(self, batch: pa.RecordBatch, where: str) -> None:
        if batch.num_rows == 0:
            return
        columns = self.incremental.columns
        for name in columns:
            nulls = batch.column(name).null_count
            if nulls:
                raise JobError(
                    f"{where}: in.incremental.columns: {name} is null in {nulls} row(s); a row "
                    "without a value cannot be placed after the last record (a later run would "
                    "never read it): fill it (COALESCE in the query) or choose another column"
                )
        # The greatest row in column order, without sorting: the greatest first value, then
        # among the rows holding it the greatest second value, and so on.
        rows: pa.RecordBatch = batch
        for name in columns:
            rows = rows.filter(pc.equal(rows.column(name), pc.max(rows.column(name))))
        self.offer(tuple(rows.column(name)[0].as_py() for name in columns))

    def restore(self, diff: Mapping[str, Any], schema: pa.Schema) -> None:
        """Take in what earlier runs of a resumed job read (a :meth:`diff` they recorded)."""
        values = (diff.get("incremental") or {}).get("last_record")
        if not values:
            return
        earlier = Incremental(self.incremental.columns, tuple(values)).typed_last(schema)
        assert earlier is not None
        self.offer(tuple(value.as_py() for value in earlier))

    def offer(self, row: tuple[Any, ...]) -> None:
        """A row read elsewhere (a task on an executor's worker): kept if it is greater."""
        with self._lock:
            if self._last is None or row > self._last:
                self._last = row

    @property
    def last(self) -> tuple[Any, ...] | None:
        with self._lock:
            return self._last

    def diff(self) -> dict[str, Any]:
        """The config diff of a run: the greatest row read, or nothing when none was."""
        last = self.last
        if last is None:
            return {}
        return {"incremental": {"last_record": [diff_value(v) for v in last]}}


class IncrementalInput(InputPlugin):
    """``inner``'s rows after the last record only; records the greatest row read."""

    type_name = "incremental"

    def __init__(self, inner: InputPlugin, incremental: Incremental) -> None:
        super().__init__(inner.config, inner.context)
        self.inner, self.incremental = inner, incremental
        self.replayable = inner.replayable  # type: ignore[misc]
        self.tracker = Tracker(incremental)
        self._last: list[pa.Scalar] | None = None
        self._checked = False

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def schema(self) -> pa.Schema:
        schema = self.inner.schema()
        if not self._checked:
            self.incremental.check(schema)
            self._last = self.incremental.typed_last(schema)
            self._checked = True
        return schema

    def task_count(self) -> int:
        return self.inner.task_count()

    def describe_task(self, task_index: int) -> str:
        return self.inner.describe_task(task_index)

    def row_count(self) -> int | None:
        return None if self.incremental.last_record is not None else self.inner.row_count()

    def fingerprint(self) -> dict[str, Any] | None:
        inner = self.inner.fingerprint()
        if inner is None:
            return None
        return {**inner, "after": list(map(diff_value, self.incremental.last_record or ()))}

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        self.schema()
        where = self.inner.describe_task(task_index)
        for batch in self.inner.read(task_index):
            if self._last is not None:
                batch = batch.filter(self.incremental.after(batch, self._last))
            self.tracker.see(batch, where)
            yield batch


def diff_value(value: Any) -> Any:
    """A value as the config diff (YAML) keeps it, readable back by :func:`_scalar`."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _scalar(value: Any, kind: pa.DataType, name: str) -> pa.Scalar:
    try:
        if pat.is_timestamp(kind) and isinstance(value, str):
            moment = dt.datetime.fromisoformat(value)
            if kind.tz is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return pa.scalar(moment).cast(kind)
        if pat.is_date(kind) and isinstance(value, str):
            return pa.scalar(dt.date.fromisoformat(value), kind)
        if pat.is_decimal(kind):
            return pa.scalar(decimal.Decimal(str(value)), kind)
        return pa.scalar(value).cast(kind)
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ConfigError(
            f"in.incremental.last_record: {value!r} cannot be a value of {name} ({kind}): {error}"
        ) from None


def sql_literal(value: pa.Scalar) -> str:
    """A typed SQL literal (DuckDB and PostgreSQL read these forms)."""
    kind, python = value.type, value.as_py()
    if pat.is_timestamp(kind):
        text = python.isoformat(sep=" ")
        return f"TIMESTAMPTZ '{text}'" if kind.tz is not None else f"TIMESTAMP '{text}'"
    if pat.is_date(kind):
        return f"DATE '{python.isoformat()}'"
    if pat.is_decimal(kind):
        return f"CAST('{python}' AS DECIMAL({kind.precision}, {kind.scale}))"
    if pat.is_integer(kind) or pat.is_floating(kind):
        return repr(python)
    if pat.is_boolean(kind):
        return "TRUE" if python else "FALSE"
    return "'" + str(python).replace("'", "''") + "'"


def _orderable(kind: pa.DataType) -> bool:
    return bool(
        pat.is_timestamp(kind)
        or pat.is_date(kind)
        or pat.is_integer(kind)
        or pat.is_floating(kind)
        or pat.is_decimal(kind)
        or pat.is_string(kind)
        or pat.is_large_string(kind)
    )
