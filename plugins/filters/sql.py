"""``{type: sql, query: SELECT ... FROM batch}``: a DuckDB SELECT over each batch.

Row-wise expressions only: the query sees one batch at a time (as the table ``batch``), so an
aggregate or a DISTINCT works per batch, not over the input. It may read no file and change no
setting.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from arrowbulk import ConfigError, FilterPlugin, JobError, load_schema

if TYPE_CHECKING:
    import duckdb


class SqlFilter(FilterPlugin):
    type_name = "sql"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("filters", "sql.json")

    def __init__(self, config: Mapping[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self._local = threading.local()  # a DuckDB connection per thread

    def _connection(self) -> duckdb.DuckDBPyConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            import duckdb

            connection = duckdb.connect(config={"autoload_known_extensions": False})
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
            self._local.connection = connection
        return connection

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        import duckdb

        statements = duckdb.extract_statements(self.config["query"])
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise ConfigError("filters: sql.query must be exactly one SELECT ... FROM batch")
        try:
            self.schema = self._run(pa.RecordBatch.from_pylist([], schema=schema)).schema
        except JobError as error:
            raise ConfigError(f"filters: sql.query: {error}") from None
        return self.schema

    def _run(self, batch: pa.RecordBatch) -> pa.Table:
        import duckdb

        connection = self._connection()
        try:
            connection.register("batch", batch)
            try:
                return connection.sql(self.config["query"]).to_arrow_table()
            finally:
                connection.unregister("batch")
        except duckdb.Error as error:
            raise JobError(str(error).strip()) from None

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        table = self._run(batch)
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        return (
            table.combine_chunks().to_batches()[0]
            if table.num_rows
            else pa.RecordBatch.from_pylist([], schema=self.schema)
        )
