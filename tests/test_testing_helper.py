"""arrowbulk.testing: what a plugin author's tests use, used here the way they would."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from arrowbulk import (
    ConfigError,
    FilterPlugin,
    InputPlugin,
    JobError,
    OutputPlugin,
    PageOutput,
    RunContext,
    TaskReport,
)
from arrowbulk.testing import collect, run, run_output


class CountdownInput(InputPlugin):
    """``in: {type: countdown, from: N, tasks: T}``; its schema forgets ``type``."""

    type_name = "countdown"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["from"],
            "properties": {
                "from": {"type": "integer", "minimum": 0},
                "tasks": {"type": "integer", "minimum": 1, "default": 2},
            },
        }

    def schema(self) -> pa.Schema:
        return pa.schema([("n", pa.int64())])

    def task_count(self) -> int:
        return int(self.config["tasks"])

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        values = [
            n for n in range(self.config["from"], 0, -1) if n % self.task_count() == task_index
        ]
        yield pa.record_batch([pa.array(values, pa.int64())], schema=self.schema())


class DoubleFilter(FilterPlugin):
    type_name = "double"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        return schema

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.record_batch([pc.multiply(batch.column(0), 2)], schema=batch.schema)


class EvenOnlyOutput(OutputPlugin[dict[str, Any]]):
    """Accepts even numbers, rejects odd ones: a destination with an opinion."""

    type_name = "even_only"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": {}}

    def open(self, task: dict[str, Any], schema: pa.Schema, task_index: int) -> PageOutput:
        return EvenPage()


class EvenPage(PageOutput):
    def __init__(self) -> None:
        self.report = TaskReport()

    def add(self, batch: pa.RecordBatch) -> None:
        odd = pc.sum(pc.bit_wise_and(batch.column(0), 1)).as_py() or 0
        self.report.accepted += batch.num_rows - odd
        if odd:
            self.report.reject("odd", odd)

    def commit(self) -> TaskReport:
        return self.report


def test_collect_runs_an_input_and_its_filters_in_process() -> None:
    table = collect(
        {"type": "countdown", "from": 5},
        [{"type": "double"}],
        plugins=[CountdownInput, DoubleFilter],
    )
    assert sorted(table.column("n").to_pylist()) == [2, 4, 6, 8, 10]


def test_run_output_feeds_a_table_and_reports_the_account() -> None:
    result = run_output(
        pa.table({"n": [1, 2, 3, 4]}), {"type": "even_only"}, plugins=[EvenOnlyOutput]
    )
    summary = result.summary
    assert (summary.rows_read, summary.accepted, summary.rejected) == (4, 2, {"odd": 2})


def test_a_schema_without_type_still_takes_the_type_key() -> None:
    # Both plugins' schemas say additionalProperties: false and do not list `type`.
    result = run(
        {"in": {"type": "countdown", "from": 3, "tasks": 1}, "out": {"type": "even_only"}},
        plugins=[CountdownInput, EvenOnlyOutput],
    )
    assert result.summary.accepted == 1


def test_errors_reach_the_test_as_they_are() -> None:
    with pytest.raises(ConfigError, match=r"in\.from"):
        collect({"type": "countdown", "from": -1}, plugins=[CountdownInput])

    class Broken(EvenOnlyOutput):
        type_name = "broken"

        def open(self, task: dict[str, Any], schema: pa.Schema, task_index: int) -> PageOutput:
            raise JobError("the destination is down")

    with pytest.raises(JobError, match="destination is down"):
        run_output(pa.table({"n": [1]}), {"type": "broken"}, plugins=[Broken])
    failed = run_output(
        pa.table({"n": [1]}), {"type": "broken"}, plugins=[Broken], raise_errors=False
    )
    # open() failed before a row was read: nothing read, nothing unsent, and it says why.
    assert (failed.summary.status, failed.summary.rows_read) == ("failed", 0)
    assert failed.summary.error == "the destination is down"


def test_the_context_reaches_plugins() -> None:
    seen: list[RunContext] = []

    class Peek(CountdownInput):
        type_name = "peek"

        def schema(self) -> pa.Schema:
            seen.append(self.context)
            return super().schema()

    collect({"type": "peek", "from": 1, "tasks": 1}, plugins=[Peek])
    assert seen and seen[0].run_id
