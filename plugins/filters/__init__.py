"""The built-in filters: ``rename``, ``columns`` and ``sql``."""

from collections.abc import Callable

from arrowbulk import FilterPlugin, hookimpl
from arrowbulk.plugins.filters.columns import ColumnsFilter
from arrowbulk.plugins.filters.rename import RenameFilter
from arrowbulk.plugins.filters.sql import SqlFilter


@hookimpl(trylast=True)
def register_filter_plugins(register: Callable[[type[FilterPlugin]], None]) -> None:
    register(RenameFilter)
    register(ColumnsFilter)
    register(SqlFilter)
