"""Reading files as Arrow record batches, streaming, split into tasks.

Tasks: one per Parquet row group (so ``max_threads`` has work to share even with a single
large file), one per file for the other formats. Memory is bounded by the batch size and, for
Parquet, one row group's column chunks (refused past ``max_row_group_bytes``, so a tiny
compressed file cannot inflate to gigabytes). Every value arrives as written or the read stops
with the reason: a row group with fewer rows than its metadata declares, a CSV text that a
number type would change (``csv_types.py``), a byte string that is not UTF-8 when read as text.
CSV and JSON Lines may be compressed (``.gz``, ``.bz2``, ``.zst``). Which files and which Hive
partitions a path names: ``discover.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pyarrow.types as pat

from arrowbulk import (
    ConfigError,
    Incremental,
    InputPlugin,
    JobError,
    RunContext,
    SchemaError,
    file_digest,
    load_schema,
    rebatch,
)
from arrowbulk.plugins.file.csv_types import cast_checked, is_number, named_type, safe_inferred
from arrowbulk.plugins.file.discover import Found, find_files
from arrowbulk.plugins.file.formats import format_of, open_stream
from arrowbulk.plugins.file.json_depth import check_json_depth

# Block size for CSV / JSON readers: large enough for speed, small enough to bound memory.
_BLOCK_BYTES = 1 << 20
_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError)


@dataclass(frozen=True)
class FileTask:
    path: Path
    format: str
    row_group: int | None = None
    partitions: tuple[tuple[str, str | None], ...] = ()

    def describe(self) -> str:
        where = f" row group {self.row_group}" if self.row_group is not None else ""
        return f"{self.path.name}{where}"


class FileInput(InputPlugin):
    """``in: {type: file, path: ...}``."""

    type_name = "file"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("file", "input.json")

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.batch_size: int = config["batch_size"]
        self.columns: list[str] | None = config.get("columns")
        self.csv: Mapping[str, Any] = config.get("csv", {})
        self.binary_as_string: bool = config["binary_as_string"]
        self.max_row_group_bytes: int = config["max_row_group_bytes"]
        patterns = config["path"]
        self.found: list[Found] = find_files(
            [patterns] if isinstance(patterns, str) else list(patterns),
            context.resolve,
            config["hive_partitioning"],
        )
        self.files = [
            (f.path, format_of(f.path, config.get("format"), "in.format")) for f in self.found
        ]
        self.column_types = {
            name: named_type(kind, f"in.csv.column_types.{name}")
            for name, kind in self.csv.get("column_types", {}).items()
        }
        self._file_schema: pa.Schema | None = None  # the columns read from the files
        self._schema: pa.Schema | None = None  # ... plus Hive partitions, as batches have them
        self._tasks: list[FileTask] | None = None
        self._csv_numbers: list[pa.Field] = []
        self._as_text: dict[str, pa.DataType] = {}

    # -- schema ----------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        if self._schema is None:
            path, fmt = self.files[0]
            schema = self._first_schema(path, fmt)
            self._check_other_files(path, schema)
            file_schema = self._project(schema, path)
            self._file_schema = file_schema
            fields = [self._as_read(f) for f in file_schema]
            # Columns whose batches need work after reading (known once, not per batch).
            self._csv_numbers = [f for f in file_schema if is_number(f.type)]
            self._as_text = {
                f.name: r.type for f, r in zip(file_schema, fields, strict=True) if r.type != f.type
            }
            fields += [pa.field(key, pa.string()) for key, _ in self.found[0].partitions]
            self._schema = pa.schema(fields)
        return self._schema

    def _first_schema(self, path: Path, fmt: str) -> pa.Schema:
        if fmt != "csv":
            return _read_schema(path, fmt, self._csv_parse())
        inferred = _read_schema(path, fmt, self._csv_parse())
        if self.csv.get("strings_only", False):
            return pa.schema([pa.field(n, pa.string()) for n in inferred.names])
        unknown = sorted(set(self.column_types) - set(inferred.names))
        if unknown:
            raise ConfigError(f"in.csv.column_types: {', '.join(unknown)} not in {path.name}")
        texts = _csv_sample_as_text(
            path, self._csv_parse(), self.csv.get("null_values", [""]), inferred.names
        )
        safe = safe_inferred(inferred, texts)
        return pa.schema([f.with_type(self.column_types.get(f.name, f.type)) for f in safe])

    def _as_read(self, field: pa.Field) -> pa.Field:
        """A column's type in the batches: unannotated bytes as text, when asked."""
        if self.binary_as_string and (pat.is_binary(field.type) or pat.is_large_binary(field.type)):
            return field.with_type(
                pa.large_string() if pat.is_large_binary(field.type) else pa.string()
            )
        return field

    def task_count(self) -> int:
        return len(self._task_list())

    def describe_task(self, task_index: int) -> str:
        return self._task_list()[task_index].describe()

    def row_count(self) -> int | None:
        """From the Parquet footers (a task per row group); unknown for other formats."""
        if any(fmt != "parquet" for _, fmt in self.files):
            return None
        return sum(int(_parquet_file(path).metadata.num_rows) for path, _ in self.files)

    def fingerprint(self) -> dict[str, Any]:
        """Every file's full content digest (a same-size rewrite keeping the time is caught)."""
        return {"files": [file_digest(path) for path, _ in self.files], "tasks": self.task_count()}

    # -- reading ---------------------------------------------------------------------------
    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        task = self._task_list()[task_index]
        expected = self.schema()
        try:
            first_row = 0
            for batch in rebatch(self._read_raw(task), self.batch_size):
                batch = self._typed(batch, task, first_row)
                first_row += batch.num_rows
                if not batch.schema.equals(expected):
                    batch = _conform(batch, expected, task)
                yield batch
        except _READ_ERRORS as error:
            raise JobError(f"cannot read {task.describe()}: {error}") from None

    def _typed(self, batch: pa.RecordBatch, task: FileTask, first_row: int) -> pa.RecordBatch:
        """The file's columns in their final types, then the task's Hive partitions."""
        numbers = self._csv_numbers if task.format == "csv" else []
        if not (numbers or self._as_text or task.partitions):
            return batch  # the common case: Parquet or Arrow read as written
        columns = dict(zip(batch.schema.names, batch.columns, strict=True))
        for field in numbers:
            if pat.is_string(columns[field.name].type):
                columns[field.name] = cast_checked(
                    columns[field.name], field.type, task.describe(), field.name, first_row
                )
        for name, wanted in self._as_text.items():
            if columns[name].type != wanted:
                columns[name] = _utf8(columns[name], wanted, task, name, first_row)
        for key, value in task.partitions:
            columns[key] = (
                pa.nulls(batch.num_rows, pa.string())
                if value is None
                else pa.repeat(value, batch.num_rows)
            )
        return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))

    def _task_list(self) -> list[FileTask]:
        if self._tasks is None:
            tasks: list[FileTask] = []
            for found, (path, fmt) in zip(self.found, self.files, strict=True):
                if fmt == "parquet":
                    groups = _parquet_file(path).metadata.num_row_groups
                    tasks += [
                        FileTask(path, fmt, group, found.partitions) for group in range(groups)
                    ] or [FileTask(path, fmt, None, found.partitions)]
                else:
                    tasks.append(FileTask(path, fmt, None, found.partitions))
            self._tasks = tasks
        return self._tasks

    def _read_raw(self, task: FileTask) -> Iterator[pa.RecordBatch]:
        assert self._file_schema is not None
        columns = self._file_schema.names
        if task.format == "parquet":
            yield from self._parquet_rows(task, columns)
        elif task.format == "arrow":
            for batch in _ipc_batches(task.path):
                yield batch.select(columns)
        elif task.format == "csv":
            # A stream, not the path: given a path, Arrow's reader buffered the whole file
            # (measured: 33 MB peak for a 33 MB CSV, 2 MB with a stream).
            text_columns = {
                f.name: pa.string() if is_number(f.type) else f.type for f in self._file_schema
            }
            with open_stream(task.path) as source:
                yield from _csv_reader(source, self._csv_parse(), self._csv_options(text_columns))
        else:
            check_json_depth(task.path)
            with open_stream(task.path) as source:
                reader = pajson.open_json(
                    source,
                    read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES),
                    parse_options=pajson.ParseOptions(explicit_schema=self._file_schema),
                )
                for batch in reader:
                    yield batch.select(columns)

    def _parquet_rows(self, task: FileTask, columns: list[str]) -> Iterator[pa.RecordBatch]:
        parquet = _parquet_file(task.path)
        if task.row_group is None:
            return  # a file without row groups: no rows
        group = parquet.metadata.row_group(task.row_group)
        if self._older_than_last_record(group):
            return  # every row is at or before the last record: nothing to read
        _check_inflation(task, group, columns, self.max_row_group_bytes)
        rows = 0
        for batch in parquet.iter_batches(
            batch_size=self.batch_size,
            row_groups=[task.row_group],
            columns=columns,
            use_threads=False,
        ):
            rows += batch.num_rows
            yield batch
        if rows != group.num_rows:
            raise JobError(
                f"{task.describe()}: the file's metadata declares {group.num_rows:,} rows but "
                f"{rows:,} could be read; the file is damaged (refused rather than read in part)"
            )

    def _older_than_last_record(self, group: Any) -> bool:
        """For an incremental read: the row group's statistics say its greatest value of the
        first incremental column is below the last record's (so no row can come after it).
        Unsure (no statistics, types that do not compare) means read it; the host filters."""
        incremental = Incremental.of(self.config)
        if incremental is None or incremental.last_record is None:
            return False
        last = incremental.typed_last(self.schema())
        assert last is not None
        first = incremental.columns[0]
        for index in range(group.num_columns):
            column = group.column(index)
            if column.path_in_schema != first:
                continue
            stats = column.statistics
            if stats is None or not stats.has_min_max:
                return False
            try:
                return bool(stats.max < last[0].as_py())
            except TypeError:
                return False
        return False

    def _check_other_files(self, first: Path, schema: pa.Schema) -> None:
        """Refuse mismatched files before any data moves (where reading a schema is cheap)."""
        for path, fmt in self.files[1:]:
            if fmt not in {"parquet", "arrow"}:
                continue
            names = _read_schema(path, fmt, self._csv_parse()).names
            wanted = self.columns or schema.names
            if not set(wanted) <= set(names) or (not self.columns and names != schema.names):
                raise SchemaError(
                    f"{path.name} has columns {names}, but {first.name} has {schema.names}; "
                    "all files of one input must have the same columns"
                )

    def _csv_parse(self) -> pacsv.ParseOptions:
        tab_separated = ".tsv" in [s.lower() for s in self.files[0][0].suffixes]
        delimiter = self.csv.get("delimiter", "\t" if tab_separated else ",")
        return pacsv.ParseOptions(delimiter=delimiter, quote_char=self.csv.get("quote_char", '"'))

    def _csv_options(self, types: Mapping[str, pa.DataType]) -> pacsv.ConvertOptions:
        # Every file after the first is read with the first file's types, so one schema holds.
        return pacsv.ConvertOptions(
            column_types=dict(types),
            null_values=self.csv.get("null_values", [""]),
            strings_can_be_null=True,
            include_columns=list(types),
        )

    def _project(self, schema: pa.Schema, path: Path) -> pa.Schema:
        if not self.columns:
            return schema
        partitions = {key for key, _ in self.found[0].partitions}
        wanted = [c for c in self.columns if c not in partitions]
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise ConfigError(
                f"in.columns: {', '.join(missing)} not in {path.name} "
                f"(it has {', '.join(schema.names)})"
            )
        return pa.schema([schema.field(c) for c in wanted])


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except _READ_ERRORS as error:
        raise JobError(f"{path.name} is not a readable Parquet file: {error}") from None


def _check_inflation(task: FileTask, group: Any, columns: list[str], limit: int) -> None:
    """Refuse a row group whose columns declare more bytes, uncompressed, than ``limit``."""
    wanted = set(columns)
    declared = sum(
        group.column(i).total_uncompressed_size
        for i in range(group.num_columns)
        if group.column(i).path_in_schema.split(".")[0] in wanted
    )
    if declared > limit:
        raise JobError(
            f"{task.describe()}: its columns inflate to {declared:,} bytes, over "
            f"in.max_row_group_bytes ({limit:,}); raise it if the file is trusted"
        )


def _ipc_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Arrow IPC in either layout: the random-access file (Feather v2) or the stream."""
    with pa.memory_map(str(path)) as source:
        try:
            reader = ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            yield from ipc.open_stream(source)
            return
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)


def _read_schema(path: Path, fmt: str, csv_parse: pacsv.ParseOptions) -> pa.Schema:
    try:
        if fmt == "parquet":
            return _parquet_file(path).schema_arrow
        if fmt == "arrow":
            with pa.memory_map(str(path)) as source:
                try:
                    return ipc.open_file(source).schema
                except pa.ArrowInvalid:
                    source.seek(0)
                    return ipc.open_stream(source).schema
        if fmt == "csv":
            convert = pacsv.ConvertOptions(strings_can_be_null=True)
            with open_stream(path) as source, _csv_reader(source, csv_parse, convert) as reader:
                return reader.schema
        check_json_depth(path)
        with (
            open_stream(path) as source,
            pajson.open_json(
                source, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES)
            ) as reader,
        ):
            return reader.schema
    except _READ_ERRORS as error:
        raise JobError(f"cannot read the schema of {path.name} as {fmt}: {error}") from None


def _csv_sample_as_text(
    path: Path, parse: pacsv.ParseOptions, nulls: list[str], names: list[str]
) -> pa.Table:
    """The first block of a CSV with every column as text: what inference saw, verbatim."""
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), null_values=nulls, strings_can_be_null=True
    )
    try:
        with open_stream(path) as source, _csv_reader(source, parse, convert) as reader:
            return pa.Table.from_batches([reader.read_next_batch()])
    except StopIteration:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    except _READ_ERRORS as error:
        raise JobError(f"cannot read {path.name} as CSV: {error}") from None


def _csv_reader(
    source: pa.NativeFile, parse: pacsv.ParseOptions, convert: pacsv.ConvertOptions
) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=parse,
        convert_options=convert,
    )


def _utf8(
    column: pa.Array, wanted: pa.DataType, task: FileTask, name: str, first_row: int
) -> pa.Array:
    try:
        return column.cast(wanted)
    except pa.ArrowInvalid:
        valid = column.cast(pa.large_binary()).to_pylist()
        for position, value in enumerate(valid):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    raise JobError(
                        f"{task.describe()}, row {first_row + position}, column {name}: bytes that "
                        "are not UTF-8 text; read it as bytes (in.binary_as_string: false)"
                    ) from None
        raise


def _conform(batch: pa.RecordBatch, expected: pa.Schema, task: FileTask) -> pa.RecordBatch:
    """Make a batch of a later file fit the first file's schema, or say why it cannot."""
    if batch.schema.names != expected.names:
        raise SchemaError(
            f"{task.describe()} has columns {batch.schema.names}, "
            f"but the first file has {expected.names}; all files of one input must match"
        )
    try:
        return batch.cast(expected)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise SchemaError(
            f"{task.describe()}: its column types differ from the first file's: {error}"
        ) from None
