"""The ``adbc`` input: a query on a database (PostgreSQL, SQLite), streamed through ADBC."""

from collections.abc import Callable

from arrowbulk import InputPlugin, hookimpl
from arrowbulk.plugins.adbc.input import AdbcInput


@hookimpl(trylast=True)
def register_input_plugins(register: Callable[[type[InputPlugin]], None]) -> None:
    register(AdbcInput)
