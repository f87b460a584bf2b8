"""The plugin contract: each hook has a test named after it, and is documented."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arrowbulk import (
    Command,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    TaskReport,
    hookimpl,
    hookspecs,
)
from arrowbulk.cli import build_parser
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.errors import ConfigError
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job


class EchoInput(InputPlugin):
    type_name = "echo"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object", "properties": {"type": {"const": "echo"}}}

    def schema(self) -> pa.Schema:
        return pa.schema([("n", pa.int64())])

    def task_count(self) -> int:
        return 1

    def read(self, task_index: int):
        yield pa.record_batch({"n": [1, 2, 3]})


class SinkOutput(OutputPlugin):
    type_name = "sink"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def open(self, task: Any, schema: pa.Schema, task_index: int) -> PageOutput:
        class Page(PageOutput):
            def add(self, batch: pa.RecordBatch) -> None:
                pass

            def commit(self) -> TaskReport:
                return TaskReport()

        return Page()


class TestPlugin:
    @hookimpl
    def register_input_plugins(self, register: Callable[[type[InputPlugin]], None]) -> None:
        register(EchoInput)

    @hookimpl
    def register_output_plugins(self, register: Callable[[type[OutputPlugin]], None]) -> None:
        register(SinkOutput)

    @hookimpl
    def register_commands(self, register: Callable[[Command], None]) -> None:
        register(
            Command("hello", "say hello", lambda parser: parser.add_argument("who"), lambda args: 0)
        )


def test_register_input_plugins() -> None:
    registry = load_registry(extra=[TestPlugin()])
    assert registry.input_class("echo") is EchoInput
    assert registry.input_class("file").__name__ == "FileInput"  # built-ins still there


def test_register_output_plugins() -> None:
    registry = load_registry(extra=[TestPlugin()])
    assert registry.output_class("sink") is SinkOutput
    assert {"file", "null", "sink"} <= set(registry.outputs)


def test_register_filter_plugins() -> None:
    from arrowbulk import FilterPlugin

    class Passthrough(FilterPlugin):
        type_name = "passthrough"

        @classmethod
        def config_schema(cls) -> Mapping[str, Any]:
            return {"type": "object"}

        def transform_schema(self, schema: pa.Schema) -> pa.Schema:
            return schema

        def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
            return batch

    class Filters:
        @hookimpl
        def register_filter_plugins(self, register: Callable[[type[FilterPlugin]], None]) -> None:
            register(Passthrough)

    registry = load_registry(extra=[Filters()])
    assert registry.filter_class("passthrough", "filters[0]") is Passthrough
    assert {"rename", "columns", "sql"} <= set(registry.filters)
    assert {"kind": "filter", "name": "passthrough"}.items() <= next(
        row for row in registry.as_json() if row["name"] == "passthrough"
    ).items()


def test_register_executor_plugins(tmp_path: Path) -> None:
    from helpers import pickling_executor

    executor = pickling_executor()

    class Executors:
        @hookimpl
        def register_executor_plugins(self, register: Callable[[type], None]) -> None:
            register(executor)

    registry = load_registry(extra=[Executors()])
    assert registry.executor_class("pickling") is executor
    assert "local" in registry.executors  # the host's own, always there
    with pytest.raises(ConfigError, match=r"exec\.type: no executor named 'nope'"):
        registry.executor_class("nope")
    # A job on it: every task shipped by value and run, its report back in the summary.
    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"x": list(range(10))}), data, row_group_size=3)
    config = {
        "in": {"type": "file", "path": str(data)},
        "out": {"type": "null"},
        "exec": {"type": "pickling"},
    }
    summary = Job(pipeline_from_mapping(config, tmp_path), registry).run()
    assert summary.status == "success", summary.error
    assert summary.rows_read == 10 and summary.tasks_committed == 4
    assert set(executor.boards[-1].marks) == {0, 1, 2, 3}  # each task published its mark


def test_register_commands() -> None:
    registry = load_registry(extra=[TestPlugin()])
    assert "hello" in registry.commands
    args = build_parser(registry).parse_args(["hello", "world"])
    assert args.who == "world"
    assert args.handler(args) == 0


def test_an_installed_plugin_overrides_a_builtin_of_the_same_name() -> None:
    class MyFile(SinkOutput):
        type_name = "file"

    class Overrider:
        @hookimpl
        def register_output_plugins(self, register: Callable[[type[OutputPlugin]], None]) -> None:
            register(MyFile)

    assert load_registry(extra=[Overrider()]).output_class("file") is MyFile


def test_a_plugin_that_fails_to_import_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[arrowbulk]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ARROWBULK_PLUGINS", "file,broken")
    registry = load_registry()
    assert "file" in registry.inputs
    assert "needs libfoo" in registry.failures["broken"]
    assert any("broken" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert {
        "kind": "failed",
        "name": "broken",
        "error": "failed to load: ImportError: needs libfoo",
    } in registry.as_json()
    sys.modules.pop("broken_plugin_module", None)


def test_every_hookspec_is_documented_and_tested() -> None:
    tests = {name for name in globals() if name.startswith("test_")}
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("register_"):
            continue
        assert inspect.getdoc(function), f"hook {name} has no docstring"
        assert "Fires" in inspect.getdoc(function), f"hook {name} does not say when it fires"
        assert f"test_{name}" in tests, f"hook {name} has no test named test_{name}"


BROKEN_PLUGINS = {
    # a hook with a misspelled parameter: pluggy refuses it at register()
    "misspelled_param": (
        "from arrowbulk import hookimpl\n"
        "@hookimpl\n"
        "def register_input_plugins(registr):\n"
        "    pass\n",
        "invalid hook",
    ),
    # a misspelled hook name marked @hookimpl: only check_pending() notices
    "misspelled_hook": (
        "from arrowbulk import hookimpl\n"
        "@hookimpl\n"
        "def register_input_plugin(register):\n"
        "    pass\n",
        "invalid hook",
    ),
    # the right name without @hookimpl: registers nothing, silently, unless we say so
    "no_marker": ("def register_input_plugins(register):\n    pass\n", "registers nothing"),
    # a hook that raises while registering
    "raises": (
        "from arrowbulk import hookimpl\n"
        "@hookimpl\n"
        "def register_output_plugins(register):\n"
        "    raise RuntimeError('boom')\n",
        "register_output_plugins failed: RuntimeError: boom",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_PLUGINS))
def test_a_broken_plugin_leaves_every_command_working(
    tmp_path: Path, monkeypatch, name: str
) -> None:
    import subprocess

    source, says = BROKEN_PLUGINS[name]
    module = f"broken_{name}"
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[arrowbulk]\n{name} = {module}\n")
    (tmp_path / f"{module}.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ARROWBULK_PLUGINS": f"file,null,{name}"}
    for args in (["--version"], ["plugins"]):
        done = subprocess.run(
            [sys.executable, "-m", "arrowbulk.cli", *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(f"plugin '{name}'") == 1, done.stderr  # one warning, once
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows[name]["kind"] == "failed" and says in rows[name]["error"]
    assert rows["file"]["kind"] in {"input", "output"}
