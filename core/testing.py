"""Run pipelines in-process, for the tests of plugin authors (and for arrowbulk's own).

Plugins under test need not be installed: pass their classes and they are registered beside
the installed ones (a class of an installed plugin's ``type_name`` takes its place)::

    from arrowbulk.testing import collect, run, run_output

    rows = collect({"type": "mydb", "table": "users"}, plugins=[MyDbInput])  # a pyarrow.Table
    result = run_output(pa.table({"id": [1, 2]}), {"type": "myapi", "url": server.url},
                        plugins=[MyApiOutput])
    assert result.summary.accepted == 2

``collect`` runs an input (and filters) into the ``collect`` output, which keeps every batch
it is given; ``run_output`` feeds a table to an output through the ``file`` input; ``run`` runs
any pipeline config. Each returns the job's summary; the error that ends a run is raised as
it is (not turned into an exit code), so a test sees the exception it expects; with
``raise_errors=False`` the summary of a failed run comes back instead (``.exception`` holds it).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather

from arrowbulk.config import pipeline_from_mapping
from arrowbulk.executor import ExecutorPlugin
from arrowbulk.hookspecs import hookimpl
from arrowbulk.registry import Registry, load_registry
from arrowbulk.runner import Job
from arrowbulk.spi import (
    Control,
    FilterPlugin,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    PluginBase,
    TaskReport,
)
from arrowbulk.summary import JobSummary


@dataclass
class Result:
    summary: JobSummary
    #: What the ``collect`` output was given, in task order (empty for other outputs).
    batches: list[pa.RecordBatch] = field(default_factory=list)

    @property
    def table(self) -> pa.Table:
        """The collected batches as one table (needs at least one batch, or use ``batches``)."""
        return pa.Table.from_batches(self.batches)


def run(
    config: Mapping[str, Any],
    plugins: Sequence[type[PluginBase]] = (),
    base_dir: Path | None = None,
    raise_errors: bool = True,
) -> Result:
    """Run a pipeline (``{in:, filters:, out:, exec:}``) with ``plugins`` registered too."""
    sink = _Sink()
    registry = registry_with([*plugins, sink.output_class()])
    pipeline = pipeline_from_mapping(dict(config), base_dir or Path.cwd())
    summary = Job(pipeline, registry).run()
    if raise_errors and summary.exception is not None:
        raise summary.exception
    return Result(summary, sink.batches_in_order())


def collect(
    input_config: Mapping[str, Any],
    filters: Iterable[Mapping[str, Any]] = (),
    plugins: Sequence[type[PluginBase]] = (),
    base_dir: Path | None = None,
) -> pa.Table:
    """Every row an input (through ``filters``) yields, as one table."""
    config = {"in": dict(input_config), "filters": list(filters), "out": {"type": "collect"}}
    result = run(config, plugins, base_dir)
    if not result.batches:
        raise AssertionError(f"the input yielded no batches (summary: {result.summary})")
    return result.table


def run_output(
    table: pa.Table,
    output_config: Mapping[str, Any],
    plugins: Sequence[type[PluginBase]] = (),
    filters: Iterable[Mapping[str, Any]] = (),
    exec_config: Mapping[str, Any] | None = None,
    raise_errors: bool = True,
) -> Result:
    """Feed ``table`` to an output (one task) and return what the job reports."""
    with tempfile.TemporaryDirectory(prefix="arrowbulk-test-") as folder:
        data = Path(folder) / "input.arrow"
        feather.write_feather(table, data)
        config: dict[str, Any] = {
            "in": {"type": "file", "path": str(data)},
            "filters": list(filters),
            "out": dict(output_config),
        }
        if exec_config is not None:
            config["exec"] = dict(exec_config)
        return run(config, plugins, Path(folder), raise_errors)


def registry_with(plugins: Sequence[type[PluginBase]]) -> Registry:
    """The installed plugins and ``plugins`` (classes), these first."""
    return load_registry(extra=[_Hooks(plugins)])


class _Hooks:
    """Hook implementations registering plugin classes handed to the helpers."""

    def __init__(self, classes: Sequence[type[PluginBase]]) -> None:
        self.classes = list(classes)
        self.__name__ = "arrowbulk.testing"

    def _register(self, register: Any, kind: type) -> None:
        for cls in self.classes:
            if issubclass(cls, kind):
                register(cls)

    @hookimpl(tryfirst=True)
    def register_input_plugins(self, register: Any) -> None:
        self._register(register, InputPlugin)

    @hookimpl(tryfirst=True)
    def register_filter_plugins(self, register: Any) -> None:
        self._register(register, FilterPlugin)

    @hookimpl(tryfirst=True)
    def register_output_plugins(self, register: Any) -> None:
        self._register(register, OutputPlugin)

    @hookimpl(tryfirst=True)
    def register_executor_plugins(self, register: Any) -> None:
        self._register(register, ExecutorPlugin)


class _Sink:
    """Where one run's ``collect`` output keeps its batches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_task: dict[int, list[pa.RecordBatch]] = {}

    def batches_in_order(self) -> list[pa.RecordBatch]:
        return [b for task in sorted(self.by_task) for b in self.by_task[task]]

    def output_class(self) -> type[OutputPlugin[dict[str, Any]]]:
        sink = self

        class CollectOutput(OutputPlugin[dict[str, Any]]):
            """``out: {type: collect}``: keeps every batch in memory (tests only)."""

            type_name = "collect"

            @classmethod
            def config_schema(cls) -> Mapping[str, Any]:
                return {"type": "object", "properties": {"type": {"const": "collect"}}}

            def transaction(
                self,
                config: Mapping[str, Any],
                schema: pa.Schema,
                task_count: int,
                control: Control[dict[str, Any]],
            ) -> dict[str, Any]:
                control.run(dict(config))
                return {}

            def open(self, task: dict[str, Any], schema: pa.Schema, task_index: int) -> PageOutput:
                with sink.lock:
                    batches = sink.by_task.setdefault(task_index, [])
                return _CollectPage(batches)

        return CollectOutput


class _CollectPage(PageOutput):
    def __init__(self, batches: list[pa.RecordBatch]) -> None:
        self.batches = batches
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.rows += batch.num_rows

    def commit(self) -> TaskReport:
        return TaskReport(accepted=self.rows)
