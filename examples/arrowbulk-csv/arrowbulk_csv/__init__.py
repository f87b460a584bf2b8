"""A third-party arrowbulk package: an output and a filter, registered by entry point.

``out: {type: csv, path: ...}`` writes each task's rows to a CSV file;
``filters: [{type: trim, columns: [...]}]`` strips white space around text values (all text
columns when ``columns`` is left out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from arrowbulk import (
    ConfigError,
    FilterPlugin,
    OutputPlugin,
    PageOutput,
    RunContext,
    TaskReport,
    hookimpl,
)


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


class TrimFilter(FilterPlugin):
    type_name = "trim"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        # No "type" property: the host adds it.
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {"columns": {"type": "array", "items": {"type": "string"}}},
        }

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        texts = [f.name for f in schema if pa.types.is_string(f.type)]
        wanted = self.config.get("columns", texts)
        wrong = [name for name in wanted if name not in texts]
        if wrong:
            raise ConfigError(f"filters: trim.columns: {', '.join(wrong)} are not text columns")
        self.columns = wanted
        return schema

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for name in self.columns:
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, name, pc.utf8_trim_whitespace(batch.column(index)))
        return batch


@hookimpl
def register_output_plugins(register: Callable[[type[OutputPlugin[Any]]], None]) -> None:
    register(CsvOutput)


@hookimpl
def register_filter_plugins(register: Callable[[type[FilterPlugin]], None]) -> None:
    register(TrimFilter)
