"""An output that accepts every row and keeps none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from arrowbulk import OutputPlugin, PageOutput, TaskReport, load_schema


class NullOutput(OutputPlugin[dict[str, Any]]):
    """``out: {type: null}``."""

    type_name = "null"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("null", "output.json")

    def open(self, task: dict[str, Any], schema: pa.Schema, task_index: int) -> PageOutput:
        return NullPageOutput()


class NullPageOutput(PageOutput):
    def __init__(self) -> None:
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows

    def commit(self) -> TaskReport:
        return TaskReport(accepted=self.rows)
