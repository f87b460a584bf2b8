"""``in.split``: a query over a Parquet table, run once per range of the table's row groups.

Each task reads its own rows of the table (DuckDB skips the other row groups by the files'
row numbers), so on a cluster every worker scans a part of the data instead of the client
reading all of it into a spool. That gives the same rows as one query only when each row of
the result comes from one row of the table: filters, projections, joins that keep the
table's side. Aggregates, DISTINCT, LIMIT, window functions, or reading the table twice would
each see a part, so the query's plan is looked at first and such a query is refused.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from arrowbulk import ConfigError

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Span:
    """Rows ``[start, stop)`` of one Parquet file (whole row groups)."""

    file: str
    start: int
    stop: int


def table_files(pattern: Path, table: str) -> list[str]:
    files = sorted(glob.glob(str(pattern)))
    if not files:
        raise ConfigError(f"in.split.table: no file matches {table}'s {pattern}")
    return files


def row_group_ranges(files: list[str], rows_per_task: int, table: str) -> list[list[Span]]:
    """Consecutive row groups, file by file, in tasks of about ``rows_per_task`` rows (a row
    group is never cut). At least one task, with no spans when the table has no rows."""
    tasks: list[list[Span]] = []
    current: list[Span] = []
    rows = 0
    for path in files:
        try:
            metadata = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException) as error:
            raise ConfigError(
                f"in.split.table: {table} must be Parquet files (split cuts their row groups); "
                f"cannot read {path} as Parquet: {error}"
            ) from None
        offset = 0
        for index in range(metadata.num_row_groups):
            size = metadata.row_group(index).num_rows
            if size:
                last = current[-1] if current else None
                if last is not None and last.file == path and last.stop == offset:
                    current[-1] = Span(path, last.start, offset + size)
                else:
                    current.append(Span(path, offset, offset + size))
                rows += size
                if rows >= rows_per_task:
                    tasks.append(current)
                    current, rows = [], 0
            offset += size
    if current or not tasks:
        tasks.append(current)
    return tasks


def view_sql(spans: list[Span], files: list[str]) -> str:
    """The table as one task sees it: its spans' rows, in file order."""
    if not spans:
        return f"SELECT * FROM read_parquet({_list(files)}) LIMIT 0"
    return " UNION ALL ".join(
        f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({_text(s.file)}, "
        f"file_row_number = true) WHERE file_row_number >= {s.start} AND file_row_number < {s.stop}"
        for s in spans
    )


def describe(spans: list[Span]) -> str:
    if not spans:
        return "no rows"
    return ", ".join(f"{Path(s.file).name} rows {s.start}-{s.stop - 1}" for s in spans)


#: What the table becomes while the plan is checked: an Arrow table, whose scan is the only
#: one of its kind in the plan (the other tables are files or database tables).
PROBE_SCAN = "ARROW_SCAN"
#: Operators that combine rows: over a part of the table they give another result.
_ACROSS_ROWS = (
    "GROUP_BY",
    "AGGREGATE",
    "WINDOW",
    "LIMIT",
    "TOP_N",
    "SAMPLE",
    "DELIM",
    "POSITIONAL",
)
#: The children of a join whose every row makes at most one row of its result.
_KEPT_SIDES = {
    "INNER": (0, 1),
    "LEFT": (0,),
    "SEMI": (0,),
    "ANTI": (0,),
    "MARK": (0,),
    "SINGLE": (0,),
    "RIGHT": (1,),
    "RIGHT_SEMI": (1,),
    "RIGHT_ANTI": (1,),
}


class _Refused(Exception):
    pass


def check_per_row(connection: duckdb.DuckDBPyConnection, query: str, table: str) -> None:
    """Refuse a query whose result over parts of ``table`` differs from its result over all
    of it (``table`` is registered as an empty Arrow table of its schema)."""
    text = connection.sql("EXPLAIN (FORMAT json) " + query).fetchall()[0][1]
    try:
        scans = sum(_table_scans(node) for node in json.loads(text))
    except _Refused as refused:
        raise ConfigError(
            f"in.split: the query combines rows of {table} ({refused}), so a part of the table "
            "would give another result; split only a query that keeps or drops each row on its "
            "own (filters, projections, joins), or use in.partition_by, which splits the "
            "query's result instead"
        ) from None
    if scans != 1:
        raise ConfigError(
            f"in.split.table: the query reads {table} {scans} times; split needs a query that "
            "reads it once (or use in.partition_by, which splits the query's result)"
        )


def _table_scans(node: dict[str, Any]) -> int:
    """How many scans of the split table are below ``node``; raises _Refused where an
    operator above one would combine its rows."""
    name = str(node.get("name", ""))
    below = [_table_scans(child) for child in node.get("children", [])]
    count = sum(below)
    if PROBE_SCAN in name:
        return count + 1
    if count and any(word in name for word in _ACROSS_ROWS):
        raise _Refused(name)
    if count and ("JOIN" in name or name == "CROSS_PRODUCT"):
        kind = str(node.get("extra_info", {}).get("Join Type", "INNER")).upper()
        kept = _KEPT_SIDES.get(kind, ())
        if any(n and side not in kept for side, n in enumerate(below)):
            raise _Refused(f"{name} {kind}")
    return count


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_text(v) for v in values) + "]"
