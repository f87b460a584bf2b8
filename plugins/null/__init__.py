"""The ``null`` output: counts rows and writes nothing (dry runs, read benchmarks)."""

from collections.abc import Callable
from typing import Any

from arrowbulk import OutputPlugin, hookimpl
from arrowbulk.plugins.null.output import NullOutput


@hookimpl(trylast=True)
def register_output_plugins(register: Callable[[type[OutputPlugin[Any]]], None]) -> None:
    register(NullOutput)
