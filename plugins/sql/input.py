"""Streaming a DuckDB query result as Arrow record batches.

DuckDB plays the role ``td query`` plays for Treasure Data: the query runs embedded, file
names in it are found relative to the config file (DuckDB's ``file_search_path``), and the
result streams through ``to_arrow_reader`` so memory stays bounded by DuckDB's own buffers
and one batch. One query is one task.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from arrowbulk import InputPlugin, RunContext
from arrowbulk.batches import rebatch
from arrowbulk.errors import ConfigError, JobError
from arrowbulk.resources import load_schema

if TYPE_CHECKING:
    import duckdb


# A quoted name in a query that looks like a file DuckDB would read: 'users.parquet', 'x/*.csv'.
_QUOTED_FILE = re.compile(
    r"'([^']+\.(?:parquet|csv|tsv|json|jsonl|ndjson|arrow|feather|duckdb)(?:\.gz)?)'", re.IGNORECASE
)


class SqlInput(InputPlugin):
    """``in: {type: sql, query: ...}``."""

    type_name = "sql"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("sql", "input.json")

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.query: str = config["query"]
        self.batch_size: int = config["batch_size"]
        self._schema: pa.Schema | None = None

    def schema(self) -> pa.Schema:
        if self._schema is None:
            with self._connect() as connection:
                limited = f"SELECT * FROM ({self.query}) AS arrowbulk_query LIMIT 0"
                self._schema = self._run(connection, limited).to_arrow_table().schema
        return self._schema

    def task_count(self) -> int:
        return 1

    def describe_task(self, task_index: int) -> str:
        return "query result"

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

        with self._connect() as connection:
            relation = self._run(connection, self.query)
            try:
                with relation.to_arrow_reader(batch_size=self.batch_size) as reader:
                    yield from rebatch(reader, self.batch_size)
            except duckdb.Error as error:
                raise JobError(f"in.query failed while streaming: {_first_line(error)}") from None

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb  # imported when used: it costs 60 MB of memory and a second to load

        database = self.config.get("database")
        try:
            if database:
                path = self.context.resolve(database)
                if not path.is_file():
                    raise ConfigError(f"in.database: {database} does not exist (looked for {path})")
                connection = duckdb.connect(str(path), read_only=True)
            else:
                connection = duckdb.connect()
            connection.execute("SET file_search_path = ?", [str(self.context.base_dir)])
            if "threads" in self.config:
                connection.execute(f"SET threads = {int(self.config['threads'])}")
            if "memory_limit" in self.config:
                connection.execute("SET memory_limit = ?", [self.config["memory_limit"]])
            for name, path_text in self.config.get("tables", {}).items():
                source = str(self.context.resolve(path_text)).replace("'", "''")
                connection.execute(f"CREATE TEMP VIEW \"{name}\" AS SELECT * FROM '{source}'")
        except duckdb.Error as error:
            raise ConfigError(f"in: DuckDB refused the setup: {_first_line(error)}") from None
        return connection

    def _run(self, connection: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
        import duckdb

        try:
            return connection.sql(query)
        except duckdb.Error as error:
            raise ConfigError(f"in.query: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
