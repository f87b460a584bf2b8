"""The ``insider`` output: Insider One's user-data API, as Treasure Data's connector drives it,
and the ``insider-sandbox`` command that serves a local stand-in of that API."""

from collections.abc import Callable
from typing import Any

from arrowbulk import Command, OutputPlugin, hookimpl
from arrowbulk.plugins.insider.output import InsiderOutput
from arrowbulk.plugins.insider.sandbox_cli import SANDBOX_COMMANDS


@hookimpl(trylast=True)
def register_output_plugins(register: Callable[[type[OutputPlugin[Any]]], None]) -> None:
    register(InsiderOutput)


@hookimpl(trylast=True)
def register_commands(register: Callable[[Command], None]) -> None:
    for command in SANDBOX_COMMANDS:
        register(command)
