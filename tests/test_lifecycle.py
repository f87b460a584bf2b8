"""The host runs every task as "abort unless committed"."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest

from arrowbulk import InputPlugin, OutputPlugin, PageOutput, TaskReport, hookimpl
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.errors import JobError
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job


class CountingInput(InputPlugin):
    """Three tasks of ``rows`` rows each, in batches of two."""

    type_name = "counting"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {
            "type": "object",
            "properties": {
                "type": {"const": "counting"},
                "rows": {"type": "integer", "default": 5},
            },
        }

    def schema(self) -> pa.Schema:
        return pa.schema([("n", pa.int64())])

    def task_count(self) -> int:
        return 3

    #: Batches handed out, all tasks together (whether the host used them or not).
    yielded: ClassVar[list[int]] = []

    def close(self) -> None:
        with RecordingOutput.lock:
            RecordingOutput.calls.append(("input-close", -1))

    def read(self, task_index: int):
        rows = self.config["rows"]
        for start in range(0, rows, 2):
            CountingInput.yielded.append(task_index)
            yield pa.record_batch(
                {"n": list(range(start, min(rows, start + 2)))}, schema=self.schema()
            )


class RecordingOutput(OutputPlugin):
    """Logs every lifecycle call; fails where the config says."""

    type_name = "recording"
    calls: ClassVar[list[tuple[str, int]]] = []
    lock = threading.Lock()

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def transaction(self, config, schema, task_count, control):
        self.record("transaction", -1)
        reports = control.run(dict(config))
        self.record(f"transaction-done:{len(reports)}", -1)
        return {"last": "diff"}

    def open(self, task: Any, schema: pa.Schema, task_index: int) -> PageOutput:
        self.record("open", task_index)
        return RecordingPage(self, task, task_index)

    def cleanup(self, task, schema, task_count, reports) -> None:
        self.record(f"cleanup:{len(reports)}", -1)

    @classmethod
    def record(cls, call: str, task_index: int) -> None:
        with cls.lock:
            cls.calls.append((call, task_index))


class RecordingPage(PageOutput):
    def __init__(self, plugin: RecordingOutput, task: dict[str, Any], index: int) -> None:
        self.plugin, self.task, self.index, self.rows = plugin, task, index, 0

    def _maybe_fail(self, step: str) -> None:
        if (
            self.task.get("fail_in") == step
            and self.task.get("fail_task", self.index) == self.index
        ):
            raise JobError(f"{step} failed in task {self.index}")

    def add(self, batch: pa.RecordBatch) -> None:
        self.plugin.record("add", self.index)
        self._maybe_fail("add")
        self.rows += batch.num_rows

    def finish(self) -> None:
        self.plugin.record("finish", self.index)

    def commit(self) -> TaskReport:
        self.plugin.record("commit", self.index)
        self._maybe_fail("commit")
        return TaskReport(accepted=self.rows)

    def abort(self) -> TaskReport:
        self.plugin.record("abort", self.index)
        if self.task.get("abort_fails"):
            raise RuntimeError("abort exploded")
        return TaskReport(accepted=0)

    def close(self) -> None:
        self.plugin.record("close", self.index)


class Plugins:
    @hookimpl
    def register_input_plugins(self, register: Callable[[type[InputPlugin]], None]) -> None:
        register(CountingInput)

    @hookimpl
    def register_output_plugins(self, register: Callable[[type[OutputPlugin]], None]) -> None:
        register(RecordingOutput)


def run_job(out: dict[str, Any], threads: int = 1):
    RecordingOutput.calls = []
    pipeline = pipeline_from_mapping(
        {
            "in": {"type": "counting"},
            "out": {"type": "recording", **out},
            "exec": {"max_threads": threads},
        },
        Path.cwd(),
    )
    return Job(pipeline, load_registry(extra=[Plugins()])).run()


def calls_of(task_index: int) -> list[str]:
    return [call for call, index in RecordingOutput.calls if index == task_index]


def test_a_successful_task_is_opened_fed_finished_committed_and_closed() -> None:
    summary = run_job({})
    assert summary.status == "success"
    for task in range(3):
        assert calls_of(task) == ["open", "add", "add", "add", "finish", "commit", "close"]
    job_calls = calls_of(-1)
    # The input's close() comes once, when the job is over.
    assert job_calls == ["transaction", "transaction-done:3", "cleanup:3", "input-close"]
    assert summary.config_diff == {"out": {"last": "diff"}}  # Embulk's shape: per section
    assert (summary.rows_read, summary.accepted, summary.unsent) == (15, 15, 0)


def test_an_error_in_add_aborts_and_closes_the_task_and_never_commits() -> None:
    summary = run_job({"fail_in": "add", "fail_task": 0})
    assert summary.status == "failed"
    assert "add failed in task 0" in (summary.error or "")
    assert calls_of(0) == ["open", "add", "abort", "close"]
    assert "commit" not in calls_of(0)
    assert not any(call.startswith("cleanup") for call in calls_of(-1))
    assert calls_of(-1)[-1] == "input-close" and calls_of(-1).count("input-close") == 1


def test_an_error_in_commit_aborts_the_task() -> None:
    summary = run_job({"fail_in": "commit", "fail_task": 1})
    assert calls_of(1)[-3:] == ["commit", "abort", "close"]
    assert summary.status == "failed"


def test_an_error_in_abort_is_attached_to_the_original_error_not_replacing_it() -> None:
    summary = run_job({"fail_in": "add", "fail_task": 0, "abort_fails": True})
    error = summary.exception
    assert isinstance(error, JobError)
    assert "add failed in task 0" in str(error)
    assert any("abort exploded" in note for note in getattr(error, "__notes__", []))
    assert calls_of(0)[-1] == "close"


@pytest.mark.parametrize("threads", [1, 3])
def test_a_failed_task_stops_the_others_and_every_row_read_is_accounted_for(threads: int) -> None:
    summary = run_job({"fail_in": "add", "fail_task": 1}, threads=threads)
    assert summary.status == "failed"
    assert "add failed in task 1" in (summary.error or "")
    assert summary.rows_read == summary.accepted + summary.rejected_total + summary.unsent
    assert summary.tasks_committed < 3


def test_tasks_started_after_the_job_stopped_read_nothing() -> None:
    # One thread: task 0 fails at its first batch; tasks 1 and 2 start after the job stopped
    # and must not read a batch they would drop (each one held by the error until the end).
    CountingInput.yielded = []
    summary = run_job({"fail_in": "add", "fail_task": 0}, threads=1)
    assert summary.status == "failed"
    assert CountingInput.yielded == [0]
    assert summary.rows_read == 2  # the one batch read, accounted as unsent
    assert summary.unsent == 2
