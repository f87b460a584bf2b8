"""``out: {type: csv, path: ...}``: writes each task's rows to a CSV file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from arrowbulk import OutputPlugin, PageOutput, RunContext, TaskReport, hookimpl


class CsvOutput(OutputPlugin[dict[str, Any]]):
    type_name = "csv"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "path"],
            "properties": {
                "type": {"const": "csv"},
                "path": {"type": "string", "minLength": 1},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
            },
        }

    def check(
        self, config: Mapping[str, Any], schema: pa.Schema, context: RunContext
    ) -> dict[str, Any]:
        return {"path": str(context.resolve(config["path"])), "delimiter": config["delimiter"]}

    def open(self, task: dict[str, Any], schema: pa.Schema, task_index: int) -> PageOutput:
        path = Path(task["path"].replace("{task}", str(task_index)))
        return CsvPageOutput(path, schema, task["delimiter"])


class CsvPageOutput(PageOutput):
    def __init__(self, path: Path, schema: pa.Schema, delimiter: str) -> None:
        self.path = path
        self.part = path.with_suffix(path.suffix + ".part")
        options = pacsv.WriteOptions(delimiter=delimiter)
        self.writer = pacsv.CSVWriter(str(self.part), schema, write_options=options)
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def commit(self) -> TaskReport:
        self.writer.close()
        self.part.replace(self.path)
        return TaskReport(accepted=self.rows)

    def abort(self) -> None:
        self.writer.close()
        self.part.unlink(missing_ok=True)


@hookimpl
def register_output_plugins(register: Callable[[type[OutputPlugin]], None]) -> None:
    register(CsvOutput)
