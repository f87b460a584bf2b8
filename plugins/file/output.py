"""Writing record batches to Parquet, Arrow IPC or JSON Lines files.

Each task writes ``<path>.<run id>.part`` and renames it into place on commit, so a failed
or aborted task never leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from arrowbulk import OutputPlugin, PageOutput, RunContext, TaskReport
from arrowbulk.errors import ConfigError, JobError
from arrowbulk.plugins.file.formats import format_of
from arrowbulk.resources import load_schema


@dataclass(frozen=True)
class FileOutputTask:
    path_template: str
    format: str
    compression: str
    overwrite: bool
    task_count: int
    run_id: str

    def path_for(self, task_index: int) -> Path:
        template = self.path_template
        if "{task}" not in template and self.task_count > 1:
            stem, dot, ext = template.rpartition(".")
            template = (
                f"{stem}.{{task}}.{ext}" if dot and "/" not in ext else f"{template}.{{task}}"
            )
        return Path(template.replace("{task}", f"{task_index:03d}"))


class FileOutput(OutputPlugin):
    """``out: {type: file, path: ...}``."""

    type_name = "file"

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
        return FileOutputTask(
            str(path), fmt, config["compression"], config["overwrite"], 1, context.run_id
        )

    def transaction(
        self, config: Mapping[str, Any], schema: pa.Schema, task_count: int, control: Any
    ) -> dict[str, Any]:
        task = self.check(config, schema, control.context)
        task = FileOutputTask(**{**task.__dict__, "task_count": task_count})
        if not task.overwrite:
            existing = [
                str(task.path_for(i)) for i in range(task_count) if task.path_for(i).exists()
            ]
            if existing:
                raise ConfigError(
                    f"out.overwrite is false and {existing[0]} exists; "
                    "remove it or set overwrite: true"
                )
        Path(task.path_template).parent.mkdir(parents=True, exist_ok=True)
        control.run(task)
        return {}

    def open(self, task: FileOutputTask, schema: pa.Schema, task_index: int) -> PageOutput:
        return FilePageOutput(task, schema, task.path_for(task_index))


class FilePageOutput(PageOutput):
    def __init__(self, task: FileOutputTask, schema: pa.Schema, path: Path) -> None:
        self.final_path = path
        self.part_path = path.with_name(f"{path.name}.{task.run_id}.part")
        self.rows = 0
        compression = None if task.compression == "none" else task.compression
        self._sink: BinaryIO | None = None
        self._writer: Any = None
        if task.format == "parquet":
            self._writer = pq.ParquetWriter(self.part_path, schema, compression=compression)
        elif task.format == "arrow":
            options = ipc.IpcWriteOptions(
                compression=compression if compression in {"lz4", "zstd"} else None
            )
            self._writer = ipc.new_file(str(self.part_path), schema, options=options)
        else:
            self._sink = open(self.part_path, "wb")  # noqa: SIM115 - closed in close()

    def add(self, batch: pa.RecordBatch) -> None:
        if self._sink is not None:
            self._sink.write(_json_lines(batch))
        else:
            self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def finish(self) -> None:
        self._close_writer()

    def commit(self) -> TaskReport:
        self._close_writer()
        os.replace(self.part_path, self.final_path)
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


def _json_lines(batch: pa.RecordBatch) -> bytes:
    # File export is not the hot path of arrowbulk; orjson on rows is exact and simple here.
    options = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
    return b"".join(orjson.dumps(row, default=str, option=options) for row in batch.to_pylist())
