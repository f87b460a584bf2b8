"""The ``file`` input and output: Parquet, Arrow IPC / Feather, CSV (in) and JSON Lines."""

from collections.abc import Callable
from typing import Any

from arrowbulk import InputPlugin, OutputPlugin, hookimpl
from arrowbulk.plugins.file.input import FileInput
from arrowbulk.plugins.file.output import FileOutput


@hookimpl(trylast=True)
def register_input_plugins(register: Callable[[type[InputPlugin]], None]) -> None:
    register(FileInput)


@hookimpl(trylast=True)
def register_output_plugins(register: Callable[[type[OutputPlugin[Any]]], None]) -> None:
    register(FileOutput)
