"""Inputs stream: a file ten times larger must not need ten times the memory."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from arrowbulk import OutputPlugin, PageOutput, TaskReport, hookimpl
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job


class PeakOutput(OutputPlugin):
    """Records the Arrow memory pool's high-water mark while batches arrive."""

    type_name = "peak"
    peak = 0

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def open(self, task: Any, schema: pa.Schema, task_index: int) -> PageOutput:
        plugin = type(self)

        class Page(PageOutput):
            rows = 0

            def add(self, batch: pa.RecordBatch) -> None:
                plugin.peak = max(plugin.peak, pa.total_allocated_bytes())
                self.rows += batch.num_rows

            def commit(self) -> TaskReport:
                return TaskReport(accepted=self.rows)

        return Page()


class Plugins:
    @hookimpl
    def register_output_plugins(self, register: Callable[[type[OutputPlugin]], None]) -> None:
        register(PeakOutput)


def chunk(start: int, rows: int) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table(
        {
            "id": ids,
            "email": pc.binary_join_element_wise(
                "user-", pc.cast(ids, pa.string()), "@example.com", ""
            ),
        }
    )


def write(path: Path, fmt: str, rows: int) -> None:
    step = 50_000
    if fmt == "parquet":
        with pq.ParquetWriter(path, chunk(0, 1).schema) as writer:
            for start in range(0, rows, step):
                writer.write_table(chunk(start, min(step, rows - start)), row_group_size=step)
    else:
        with pacsv.CSVWriter(str(path), chunk(0, 1).schema) as writer:
            for start in range(0, rows, step):
                writer.write_table(chunk(start, min(step, rows - start)))


def peak_for(path: Path, in_extra: dict[str, Any]) -> tuple[int, int]:
    PeakOutput.peak = 0
    in_config = {"type": "file", "path": str(path), "batch_size": 5_000, **in_extra}
    pipeline = pipeline_from_mapping(
        {"in": in_config, "out": {"type": "peak"}, "exec": {"max_threads": 1}}, path.parent
    )
    job = Job(pipeline, load_registry(extra=[Plugins()]))
    # The pool's count is process-wide: what earlier tests left for the collector, or threads
    # of theirs still winding down, would count too. Measure from what is held before the run.
    gc.collect()
    before = pa.total_allocated_bytes()
    summary = job.run()
    assert summary.status == "success", summary.error
    return max(PeakOutput.peak - before, 0), summary.rows_read


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_peak_memory_does_not_grow_with_the_file(tmp_path: Path, fmt: str) -> None:
    small, large = tmp_path / f"small.{fmt}", tmp_path / f"large.{fmt}"
    write(small, fmt, 100_000)
    write(large, fmt, 1_000_000)
    small_peak, small_rows = peak_for(small, {})
    large_peak, large_rows = peak_for(large, {})
    assert (small_rows, large_rows) == (100_000, 1_000_000)
    whole_file_in_memory = chunk(0, 1_000_000).nbytes
    assert large_peak < whole_file_in_memory / 4, (large_peak, whole_file_in_memory)
    assert large_peak < 2 * small_peak + (8 << 20), (large_peak, small_peak)
