"""``partition_by`` for the adbc input: a PostgreSQL query run once per range of a column.

Separate queries on a live database each see its state at their own start, so tasks reading
ranges at different times could miss a row that moved between ranges, or see one twice. The
job therefore opens one transaction (REPEATABLE READ), exports its snapshot
(``pg_export_snapshot``) and holds it until the job ends; every task, on this machine or a
worker, imports it (``SET TRANSACTION SNAPSHOT``) before its query, as ``pg_dump --jobs``
does. All tasks then read one state of the database, and each reads it the same way twice
(ordered by the column, then by the whole row's text), which the record check and a task's
retry rely on. The ranges split the column's min..max into equal widths; NULLs go to the
first task.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from arrowbulk import ConfigError, JobError

log = logging.getLogger(__name__)

Bound = int | decimal.Decimal | dt.datetime | dt.date


@dataclass(frozen=True)
class Snapshot:
    """The job's exported snapshot and each task's condition on the column."""

    id: str
    column: str  # quoted
    ranges: list[str]
    #: The exporting connection and cursor: in the job's process only (None in a copy).
    holder: tuple[Any, Any] | None = field(default=None, compare=False)

    @classmethod
    def export(
        cls, connect: Callable[[], Any], query: str, schema: pa.Schema, column: str, parts: int
    ) -> Snapshot:
        """Open the job's transaction (``connect``: an autocommit connection) and export it."""
        convert = _converter(schema, column)
        quoted = '"' + column.replace('"', '""') + '"'
        connection = connect()
        cursor = connection.cursor()
        try:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(
                f"SELECT pg_export_snapshot(), min({quoted}), max({quoted}) "
                f"FROM ({query}) AS arrowbulk_query"
            )
            snapshot_id, low, high = cursor.fetchone()
        except Exception as error:  # the driver's own error classes
            cursor.close()
            connection.close()
            raise ConfigError(
                f"in.partition_by: the database refused the job's snapshot or the column's "
                f"range: {_message(error)}"
            ) from None
        if low is None:  # no rows, or only NULLs: the first task reads them all
            ranges = ["TRUE"] + ["FALSE"] * (parts - 1)
        else:
            ranges = _conditions(quoted, _bounds(convert(low), convert(high), parts))
        return cls(str(snapshot_id), quoted, ranges, (connection, cursor))

    def detached(self) -> Snapshot:
        return replace(self, holder=None)

    def enter(self, cursor: Any, query: str, task_index: int) -> str:
        """Start the task's transaction on the snapshot; the task's query, ordered."""
        try:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{self.id}'")
        except Exception as error:  # the driver's own error classes
            raise JobError(
                f"in.partition_by: task {task_index + 1} cannot read the job's snapshot "
                f"{self.id} ({_message(error)}); the job's transaction that holds it has ended "
                "(the job stopped, the server restarted, or idle_in_transaction_session_timeout "
                "ended it)"
            ) from None
        return (
            f"SELECT * FROM ({query}) AS arrowbulk_part WHERE {self.ranges[task_index]} "
            f"ORDER BY {self.column}, arrowbulk_part::text"
        )

    def release(self) -> None:
        """End the exporting transaction (the job is over: no task will import it again)."""
        if self.holder is None:
            return
        connection, cursor = self.holder
        try:
            cursor.execute("COMMIT")
            cursor.close()
            connection.close()
        except Exception as error:  # closing what the server may have closed already
            log.warning("in.partition_by: ending the job's snapshot: %s", _message(error))


def _converter(schema: pa.Schema, column: str) -> Callable[[Any], Bound]:
    """How the column's min and max arrive from the driver, as values to compute ranges on."""
    if column not in schema.names:
        raise ConfigError(
            f"in.partition_by.column: {column!r} is not a column of the query's result "
            f"({', '.join(schema.names)}); name one of them"
        )
    kind = schema.field(column).type
    if pat.is_integer(kind):
        return int
    if pat.is_decimal(kind):
        return lambda value: decimal.Decimal(str(value))
    if pat.is_timestamp(kind) or pat.is_date(kind):
        return lambda value: value
    raise ConfigError(
        f"in.partition_by.column: {column} is {kind}; ranges need an integer, numeric, date or "
        "timestamp column (cast it in the query)"
    )


def _bounds(low: Bound, high: Bound, parts: int) -> list[Bound]:
    """``parts - 1`` boundaries cutting low..high into equal widths."""
    cuts = range(1, parts)
    if isinstance(low, int) and isinstance(high, int):
        width = high - low + 1
        return [low + width * k // parts for k in cuts]
    if isinstance(low, decimal.Decimal) and isinstance(high, decimal.Decimal):
        return [low + (high - low) * k / parts for k in cuts]
    if isinstance(low, dt.datetime) and isinstance(high, dt.datetime):
        return [low + (high - low) * k / parts for k in cuts]
    assert isinstance(low, dt.date) and isinstance(high, dt.date)
    days = (high - low).days + 1
    return [low + dt.timedelta(days=days * k // parts) for k in cuts]


def _conditions(column: str, bounds: list[Bound]) -> list[str]:
    literals = [_literal(bound) for bound in bounds]
    first = f"({column} < {literals[0]} OR {column} IS NULL)"
    middle = [
        f"{column} >= {low} AND {column} < {high}" for low, high in itertools.pairwise(literals)
    ]
    return [first, *middle, f"{column} >= {literals[-1]}"]


def _literal(value: Bound) -> str:
    if isinstance(value, dt.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return str(value)


def _message(error: Exception) -> str:
    return " ".join(str(error).split())[:500]
