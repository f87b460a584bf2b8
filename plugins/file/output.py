"""Writing record batches to Parquet, Arrow IPC or JSON Lines files.

Embulk's transaction: each task writes ``<path>.<run id>.part``; only when every task has
committed does the job rename the parts into place, so a failed job leaves no output (and no
part files). Existing files are kept unless ``overwrite: true``. Types a format cannot hold are
refused when the job starts (``types.py``); JSON Lines conventions are in ``jsonl.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from arrowbulk import (
    ConfigError,
    Control,
    JobError,
    OutputPlugin,
    PageOutput,
    RunContext,
    TaskReport,
    load_schema,
)
from arrowbulk.plugins.file.formats import format_of
from arrowbulk.plugins.file.jsonl import check_jsonl_types, json_lines
from arrowbulk.plugins.file.types import check_parquet_types, conform


@dataclass(frozen=True)
class FileOutputTask:
    path_template: str
    format: str
    compression: str
    overwrite: bool
    task_count: int
    run_id: str
    written_schema: pa.Schema

    def path_for(self, task_index: int) -> Path:
        template = self.path_template
        if "{task}" not in template and self.task_count > 1:
            stem, dot, ext = template.rpartition(".")
            template = (
                f"{stem}.{{task}}.{ext}" if dot and "/" not in ext else f"{template}.{{task}}"
            )
        return Path(template.replace("{task}", f"{task_index:03d}"))


class FileOutput(OutputPlugin[FileOutputTask]):
    """``out: {type: file, path: ...}``."""

    type_name = "file"
    #: Nothing a task wrote survives a failed job: its rows were not delivered.
    commits_per_job = True

    def __init__(self) -> None:
        self._parts: dict[int, Path] = {}

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("file", "output.json")

    def check(
        self, config: Mapping[str, Any], schema: pa.Schema, context: RunContext
    ) -> FileOutputTask:
        path = context.resolve(config["path"])
        fmt = format_of(path, config.get("format"), "out.format")
        if fmt == "csv":
            raise ConfigError("out.format: csv output is not built in; use parquet, arrow or jsonl")
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(f"out.path: {path.parent} is not a folder")
        written = check_parquet_types(schema) if fmt == "parquet" else schema
        if fmt == "jsonl":
            check_jsonl_types(schema)
        return FileOutputTask(
            str(path), fmt, config["compression"], config["overwrite"], 1, context.run_id, written
        )

    def transaction(
        self,
        config: Mapping[str, Any],
        schema: pa.Schema,
        task_count: int,
        control: Control[FileOutputTask],
    ) -> dict[str, Any]:
        task = self.check(config, schema, control.context)
        task = FileOutputTask(**{**task.__dict__, "task_count": task_count})
        finals = [task.path_for(i) for i in range(task_count)]
        if not task.overwrite:
            existing = [str(path) for path in finals if path.exists()]
            if existing:
                raise ConfigError(
                    f"out.overwrite is false and {existing[0]} exists"
                    + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
                    + "; remove it, write elsewhere, or set overwrite: true"
                )
        Path(task.path_template).parent.mkdir(parents=True, exist_ok=True)
        self._parts = {}
        try:
            control.run(task)
        except BaseException:
            for part in self._parts.values():
                part.unlink(missing_ok=True)
            raise
        for index, part in sorted(self._parts.items()):
            os.replace(part, finals[index])
        return {}

    def open(self, task: FileOutputTask, schema: pa.Schema, task_index: int) -> PageOutput:
        path = task.path_for(task_index)
        part = path.with_name(f"{path.name}.{task.run_id}.part")
        page = FilePageOutput(task, part, path)
        page.on_commit = lambda: self._parts.__setitem__(task_index, part)
        return page


class FilePageOutput(PageOutput):
    def __init__(self, task: FileOutputTask, part: Path, final: Path) -> None:
        self.part_path = part
        self.final_path = final
        self.schema = task.written_schema
        self.rows = 0
        self.on_commit: Any = None
        compression = None if task.compression == "none" else task.compression
        self._sink: BinaryIO | None = None
        self._writer: Any = None
        try:
            if task.format == "parquet":
                self._writer = pq.ParquetWriter(part, self.schema, compression=compression)
            elif task.format == "arrow":
                options = ipc.IpcWriteOptions(
                    compression=compression if compression in {"lz4", "zstd"} else None
                )
                self._writer = ipc.new_file(str(part), self.schema, options=options)
            else:
                self._sink = open(part, "wb")  # noqa: SIM115 - closed in close()
        except OSError as error:
            raise JobError(f"cannot write {part}: {error.strerror or error}") from None

    def add(self, batch: pa.RecordBatch) -> None:
        try:
            if self._sink is not None:
                for lines in json_lines(batch):
                    self._sink.write(lines)
            else:
                self._writer.write_batch(conform(batch, self.schema))
        except OSError as error:
            raise JobError(f"cannot write {self.part_path}: {error.strerror or error}") from None
        self.rows += batch.num_rows

    def finish(self) -> None:
        self._close_writer()

    def commit(self) -> TaskReport:
        self._close_writer()
        if self.on_commit is not None:
            self.on_commit()  # renamed into place when the whole job commits
        return TaskReport(accepted=self.rows, details={"files": [str(self.final_path)]})

    def abort(self) -> TaskReport:
        self._close_writer()
        self.part_path.unlink(missing_ok=True)
        return TaskReport(accepted=0)

    def close(self) -> None:
        self._close_writer()

    def _close_writer(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if self._sink is not None:
                self._sink.close()
        except OSError as error:
            raise JobError(f"cannot write {self.part_path}: {error}") from None
        finally:
            self._writer = self._sink = None
