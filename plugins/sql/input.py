"""Streaming a DuckDB query result as Arrow record batches.

DuckDB plays the role ``td query`` plays for Treasure Data: the query runs embedded, file
names in it are found relative to the config file (DuckDB's ``file_search_path``), and the
result streams through ``to_arrow_reader`` so memory stays bounded by DuckDB's own buffers
and one batch. One query is one task, unless ``partition_by`` splits its result by a
column's hash or ``split`` runs it once per range of a Parquet table's row groups (:mod:`split`).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from arrowbulk import (
    ConfigError,
    Incremental,
    InputPlugin,
    JobError,
    RunContext,
    load_schema,
    rebatch,
)
from arrowbulk.plugins.sql.split import (
    Span,
    check_per_row,
    describe,
    row_group_ranges,
    table_files,
    view_sql,
)

if TYPE_CHECKING:
    import duckdb


#: in.split.rows_per_task's default: a task of a million rows is seconds of work.
DEFAULT_ROWS_PER_TASK = 1_000_000

# A quoted name in a query that looks like a file DuckDB would read: 'users.parquet', 'x/*.csv'.
_QUOTED_FILE = re.compile(
    r"'([^']+\.(?:parquet|csv|tsv|json|jsonl|ndjson|arrow|feather|duckdb)(?:\.gz)?)'", re.IGNORECASE
)


class SqlInput(InputPlugin):
    """``in: {type: sql, query: ...}``."""

    type_name = "sql"
    #: A query without a total order returns its rows in another order each run: the host
    #: spools the result once per job instead of running it twice.
    replayable = False

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("sql", "input.json")

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.query: str = config["query"]
        self.batch_size: int = config["batch_size"]
        self._schema: pa.Schema | None = None
        #: partition_by: the result in parts by a column's hash, each in a fixed order (all
        #: its columns), so it reads the same twice: no spool, and tasks run in parallel.
        self.partition: Mapping[str, Any] | None = config.get("partition_by")
        #: split: the query run once per range of a Parquet table's row groups (split.py).
        self.split: Mapping[str, Any] | None = config.get("split")
        self._ranges: tuple[list[str], list[list[Span]]] | None = None
        if self.split is not None:
            self._check_split(config)
        self.replayable = self.partition is not None or self.split is not None  # type: ignore[misc]

    def _check_split(self, config: Mapping[str, Any]) -> None:
        assert self.split is not None
        if self.partition is not None:
            raise ConfigError(
                "in.split: not with in.partition_by; choose one (split cuts a Parquet table's "
                "row groups, partition_by the query's result)"
            )
        tables = config.get("tables", {})
        if self.split["table"] not in tables:
            raise ConfigError(
                f"in.split.table: {self.split['table']!r} is not a name of in.tables "
                f"({', '.join(tables) or 'none'}); map the Parquet files to a name there and "
                "read that name in the query"
            )

    def _split_ranges(self) -> tuple[list[str], list[list[Span]]]:
        """The split table's files, and each task's spans of them."""
        if self._ranges is None:
            assert self.split is not None
            table = self.split["table"]
            files = table_files(self.context.resolve(self.config["tables"][table]), table)
            rows = int(self.split.get("rows_per_task", DEFAULT_ROWS_PER_TASK))
            self._ranges = files, row_group_ranges(files, rows, table)
        return self._ranges

    def schema(self) -> pa.Schema:
        if self._schema is None:
            with self._connect() as connection:
                relation = self._relation(connection)
                types = relation.limit(0).to_arrow_table().schema.types
                # The names as the result streams them: a LIMIT around the query would
                # rename duplicates (a, a -> a, a_1), hiding them from the host's check.
                schema = pa.schema(
                    [pa.field(n, t) for n, t in zip(relation.columns, types, strict=True)]
                )
            if self.split is not None:
                self._check_per_row()
            if self.partition is not None and self.partition["column"] not in schema.names:
                raise ConfigError(
                    f"in.partition_by.column: {self.partition['column']!r} is not a column of "
                    f"the query's result ({', '.join(schema.names)}); name one of them"
                )
            self._schema = schema  # kept once the checks passed: a refusal is said each time
        return self._schema

    def _check_per_row(self) -> None:
        """The query's plan, with the split table as an empty Arrow table of its schema."""
        import duckdb

        assert self.split is not None
        files, _ = self._split_ranges()
        probe = pq.read_schema(files[0]).empty_table()
        with self._connect(probe=probe) as connection:
            try:
                check_per_row(connection, self.query, self.split["table"])
            except duckdb.Error as error:
                raise ConfigError(f"in.query: {_message(error)}") from None

    def _relation(self, connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        """The query, with 128-bit integers carried exactly as text.

        DuckDB hands HUGEINT and UHUGEINT to Arrow as decimal128(38, 0), which holds neither
        type's whole range: UHUGEINT's largest value arrived as -1. As text every digit stays.
        """
        relation = self._run(connection, self.query)
        wide = [
            name
            for name, kind in zip(relation.columns, relation.types, strict=True)
            if str(kind) in {"HUGEINT", "UHUGEINT"}
        ]
        if not wide:
            return relation
        casts = ", ".join(f"CAST({_quoted(n)} AS VARCHAR) AS {_quoted(n)}" for n in wide)
        return self._run(
            connection, f"SELECT * REPLACE ({casts}) FROM ({self.query}) AS arrowbulk_query"
        )

    def task_count(self) -> int:
        if self.split is not None:
            return len(self._split_ranges()[1])
        return int(self.partition["parts"]) if self.partition is not None else 1

    def describe_task(self, task_index: int) -> str:
        if self.split is not None:
            ranges = self._split_ranges()[1]
            return (
                f"query result over {self.split['table']}, part {task_index + 1} of "
                f"{len(ranges)} ({describe(ranges[task_index])})"
            )
        if self.partition is None:
            return "query result"
        return f"query result, part {task_index + 1} of {self.partition['parts']}"

    def fingerprint(self) -> dict[str, Any]:
        """The query, and size and time of every file it names (quoted) or maps as a table."""
        named = [m.group(1) for m in _QUOTED_FILE.finditer(self.query)]
        named += list(self.config.get("tables", {}).values())
        if self.config.get("database"):
            named.append(self.config["database"])
        files = []
        for name in named:
            for path in sorted(glob.glob(str(self.context.resolve(name)))):
                stat = Path(path).stat()
                files.append([path, stat.st_size, stat.st_mtime_ns])
        return {"query": self.query, "files": files}

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        import duckdb

        with self._connect(task_index if self.split is not None else None) as connection:
            relation = self._relation(connection)
            incremental = Incremental.of(self.config)
            condition = incremental.sql_condition(self.schema(), _quoted) if incremental else None
            if condition is not None:  # pushed down: DuckDB skips what it can
                relation = relation.filter(condition)
            if self.partition is not None:
                column, parts = _quoted(self.partition["column"]), int(self.partition["parts"])
                relation = relation.filter(f"hash({column}) % {parts} = {task_index}")
            if self.replayable:
                relation = relation.order("ALL")  # the same rows in the same order each read
            try:
                with relation.to_arrow_reader(batch_size=self.batch_size) as reader:
                    yield from rebatch(reader, self.batch_size)
            except duckdb.Error as error:
                raise JobError(f"in.query failed while streaming: {_message(error)}") from None

    def _connect(
        self, task_index: int | None = None, probe: pa.Table | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A connection with the tables as views; with ``split``, the split table as task
        ``task_index`` sees it (or, for the plan check, as ``probe``)."""
        import duckdb  # imported when used: it costs 60 MB of memory and a second to load

        _check_one_select(self.query)
        database = self.config.get("database")
        try:
            config: dict[str, str | bool | int | float | list[str]] = {
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
            if database:
                path = self.context.resolve(database)
                if not path.is_file():
                    raise ConfigError(f"in.database: {database} does not exist (looked for {path})")
                connection = duckdb.connect(str(path), read_only=True, config=config)
            else:
                connection = duckdb.connect(config=config)
            connection.execute("SET file_search_path = ?", [str(self.context.base_dir)])
            if "threads" in self.config:
                connection.execute(f"SET threads = {int(self.config['threads'])}")
            if "memory_limit" in self.config:
                connection.execute("SET memory_limit = ?", [self.config["memory_limit"]])
            split_table = self.split["table"] if self.split is not None else None
            for name, path_text in self.config.get("tables", {}).items():
                source = str(self.context.resolve(path_text)).replace("'", "''")
                view = f"SELECT * FROM '{source}'"
                if name == split_table and probe is not None:
                    connection.register(name, probe)
                    continue
                if name == split_table and task_index is not None:
                    files, ranges = self._split_ranges()
                    view = view_sql(ranges[task_index], files)
                connection.execute(f'CREATE TEMP VIEW "{name}" AS {view}')
            # The query reads files only below the folders the job names, and can change no
            # setting (a query is data to the job, not code that may write or fetch).
            connection.execute("SET allowed_directories = ?", [self._allowed_directories()])
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
        except duckdb.Error as error:
            raise ConfigError(f"in: DuckDB refused the setup: {_message(error)}") from None
        return connection

    def _allowed_directories(self) -> list[str]:
        folders = [self.context.base_dir]
        folders += [self.context.resolve(p).parent for p in self.config.get("tables", {}).values()]
        if self.config.get("database"):
            folders.append(self.context.resolve(self.config["database"]).parent)
        folders += [self.context.resolve(p) for p in self.config.get("allowed_directories", [])]
        # Names relative to the config's folder are checked by DuckDB as given, so "./" admits
        # them; _check_one_select refuses names that climb out with "..".
        return [*dict.fromkeys(f"{folder.resolve()}/" for folder in folders), "./"]

    def _run(self, connection: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
        import duckdb

        try:
            return connection.sql(query)
        except duckdb.Error as error:
            raise ConfigError(f"in.query: {_message(error)}") from None


#: Quoted texts in a query: a file name is one of them.
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _climbs_out(query: str) -> bool:
    """Whether a quoted name has a ".." segment (or "~"): it could leave the named folders."""
    for match in _QUOTED.finditer(query):
        segments = re.split(
            r"[/\\]", match.group(1) if match.group(1) is not None else match.group(2)
        )
        if ".." in segments or segments[0].startswith("~"):
            return True
    return False


def _check_one_select(query: str) -> None:
    """Refuse anything but one read-only SELECT: no COPY, ATTACH, INSTALL, LOAD, SET, a second statement."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise ConfigError(f"in.query: {_message(error)}") from None
    kinds = [statement.type for statement in statements]
    if len(kinds) != 1 or kinds[0] != duckdb.StatementType.SELECT:
        found = ", ".join(str(kind).rsplit(".", 1)[-1] for kind in kinds) or "nothing"
        raise ConfigError(
            f"in.query: must be exactly one SELECT (or WITH ... SELECT) statement; found {found}. "
            "The sql input only reads: write files with an output, not COPY or ATTACH"
        )
    if _climbs_out(query):
        raise ConfigError(
            "in.query: a file name with '..' reads outside the config's folder; name the file "
            "by a path below it, or add its folder to in.allowed_directories and use an absolute path"
        )


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _message(error: Exception) -> str:
    """DuckDB's whole message: its later lines name the column, the value and a hint."""
    return str(error).strip() or type(error).__name__
