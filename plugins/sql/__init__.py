"""The ``sql`` input: a query on an embedded DuckDB, streamed as Arrow record batches."""

from collections.abc import Callable

from arrowbulk import InputPlugin, hookimpl
from arrowbulk.plugins.sql.input import SqlInput


@hookimpl(trylast=True)
def register_input_plugins(register: Callable[[type[InputPlugin]], None]) -> None:
    register(SqlInput)
