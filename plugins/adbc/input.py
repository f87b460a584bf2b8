"""Streaming a database query's result as Arrow record batches, through ADBC.

ADBC drivers hand Arrow batches over directly (PostgreSQL's streams the result in its binary
COPY format), so memory stays bounded by one batch. Types arrive as Arrow types, with two
PostgreSQL ones made explicit here: ``numeric(p, s)`` becomes ``decimal128(p, s)`` (exact), and
an unconstrained ``numeric`` stays its text (every digit kept; cast it in the query to get a
number); ``json``/``jsonb`` stay JSON (Arrow's json type): files write the JSON text, and the
insider output refuses them (Insider takes no objects), naming the column.

The query runs once per job (``replayable = False``: the host spools it), the connection
string is a secret, and an incremental condition goes into the query. With ``partition_by``
(PostgreSQL) it runs once per range of a column instead, each task in its own transaction on
one snapshot the job exports and holds (:mod:`partitions`): the tasks together see one state
of the database, read it the same way twice, and on a cluster each worker runs its range.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from arrowbulk import (
    ConfigError,
    Incremental,
    InputPlugin,
    JobError,
    RunContext,
    Secret,
    load_schema,
    rebatch,
)
from arrowbulk.plugins.adbc.partitions import Snapshot

_DRIVERS = {
    "postgresql": ("adbc_driver_postgresql.dbapi", "adbc-driver-postgresql"),
    "sqlite": ("adbc_driver_sqlite.dbapi", "adbc-driver-sqlite"),
}


class AdbcInput(InputPlugin):
    """``in: {type: adbc, driver: postgresql, uri: ${PG_URI}, query: ...}``."""

    type_name = "adbc"
    replayable = False  # a query on a live database: run once, spooled

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("adbc", "input.json")

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.driver: str = config["driver"]
        uri = config["uri"]
        self.uri: str = uri.reveal() if isinstance(uri, Secret) else str(uri)
        if self.driver == "sqlite" and not self.uri.startswith(("file:", ":memory:")):
            # A database file, like every path in a config: relative to the config file.
            self.uri = str(context.resolve(self.uri))
        self.query: str = config["query"].strip().rstrip(";")
        self.batch_size: int = config["batch_size"]
        self._schema: pa.Schema | None = None
        self.partition: Mapping[str, Any] | None = config.get("partition_by")
        if self.partition is not None and self.driver != "postgresql":
            raise ConfigError(
                "in.partition_by: postgresql only (its tasks share an exported snapshot); "
                "remove it for sqlite"
            )
        # Within one job the ranges read one snapshot, the same twice: no spool. (A resume is
        # another job, on another snapshot: fingerprint() stays None, so --resume refuses.)
        self.replayable = self.partition is not None  # type: ignore[misc]
        self._snapshot: Snapshot | None = None

    def task_count(self) -> int:
        if self.partition is None:
            return 1
        return len(self._shared_snapshot().ranges)

    def describe_task(self, task_index: int) -> str:
        if self.partition is None:
            return f"the {self.driver} query"
        condition = self._shared_snapshot().ranges[task_index]
        return f"the {self.driver} query, part {task_index + 1} of {self.partition['parts']} ({condition})"

    def _shared_snapshot(self) -> Snapshot:
        """The job's snapshot and ranges: exported on first use, in the job's process; a
        task on a worker gets them with the plugin (its connection stays behind)."""
        if self._snapshot is None:
            assert self.partition is not None
            self._snapshot = Snapshot.export(
                lambda: self._connect(autocommit=True),
                self.query,
                self.schema(),
                self.partition["column"],
                int(self.partition["parts"]),
            )
        return self._snapshot

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.release()

    def fingerprint(self) -> dict[str, Any] | None:
        if self.partition is not None:
            raise ConfigError(
                "--resume: in.partition_by reads ranges of the live database on the job's own "
                "snapshot, and a new run has a new one (rows may have moved between ranges); "
                "run without --resume, or remove partition_by (the query is then spooled, and a "
                "resume reads the spool)"
            )
        return None

    def __getstate__(self) -> dict[str, Any]:
        # The snapshot travels by its id and ranges; its exporting connection stays here.
        state = dict(self.__dict__)
        if self._snapshot is not None:
            state["_snapshot"] = self._snapshot.detached()
        return state

    def schema(self) -> pa.Schema:
        if self._schema is None:
            with self._connect() as connection, connection.cursor() as cursor:
                raw = self._result_schema(cursor)
            self._schema = pa.schema([_conformed_field(f) for f in raw])
        return self._schema

    def _result_schema(self, cursor: Any) -> pa.Schema:
        """The query's result schema. PostgreSQL plans the query and says (nothing runs);
        SQLite infers types from the first rows, so there the query starts and only its first
        batch is read (a LIMIT 0 would leave it nothing to infer from)."""
        if self.driver == "postgresql":
            try:
                schema: pa.Schema = cursor.adbc_execute_schema(self.query)
                return schema
            except Exception as error:  # the driver's own error classes
                raise ConfigError(f"in.query: the database refused it: {_message(error)}") from None
        self._execute(cursor, self.query)
        schema = cursor.fetch_record_batch().schema
        return schema

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        query = self.query
        incremental = Incremental.of(self.config)
        condition = incremental.sql_condition(schema, _quoted) if incremental else None
        if condition is not None:  # pushed down: the database reads only what is newer
            query = f"SELECT * FROM ({query}) AS arrowbulk_query WHERE {condition}"
        snapshot = self._shared_snapshot() if self.partition is not None else None
        connection = self._connect(autocommit=snapshot is not None)
        with connection, connection.cursor() as cursor:
            if snapshot is not None:
                query = snapshot.enter(cursor, query, task_index)
            self._execute(cursor, query)
            try:
                reader = cursor.fetch_record_batch()
                for batch in rebatch(reader, self.batch_size):
                    yield _conformed(batch, schema)
            except Exception as error:  # any driver error while streaming
                raise JobError(f"in.query failed while streaming: {_message(error)}") from None

    def _connect(self, autocommit: bool = False) -> Any:
        module_name, package = _DRIVERS[self.driver]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"in.driver: {self.driver} needs the {package} package: pip install "
                f"'arrowbulk[adbc]' (or pip install {package})"
            ) from None
        try:
            # autocommit: the tasks of partition_by run their own BEGIN ... (a snapshot's).
            return module.connect(self.uri, autocommit=autocommit)
        except Exception as error:  # the driver's own error classes
            raise ConfigError(f"in.uri: cannot connect ({_message(error)})") from None

    def _execute(self, cursor: Any, query: str) -> None:
        try:
            cursor.execute(query)
        except Exception as error:  # the driver's own error classes
            raise ConfigError(f"in.query: the database refused it: {_message(error)}") from None


def _conformed_field(field: pa.Field) -> pa.Field:
    """The field as arrowbulk passes it on (metadata dropped, PostgreSQL numerics typed)."""
    kind = field.type
    if isinstance(kind, pa.BaseExtensionType) and kind.extension_name == "arrow.opaque":
        typmod = int((field.metadata or {}).get(b"POSTGRESQL:typmod", b"-1"))
        if kind.type_name == "numeric" and typmod >= 4:
            precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
            if precision <= 38:
                return pa.field(field.name, pa.decimal128(precision, scale))
        return pa.field(field.name, kind.storage_type)  # its text: nothing lost
    return pa.field(field.name, kind)


def _conformed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        if isinstance(column.type, pa.BaseExtensionType) and column.type != field.type:
            column = column.storage
        if column.type != field.type:
            column = column.cast(field.type)  # numeric text to decimal: exact, or an error
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _message(error: Exception) -> str:
    return " ".join(str(error).split())[:500]
