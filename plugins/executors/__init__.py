"""The ``dask`` executor (``local``, the default, is the host's own: :mod:`arrowbulk.executor`)."""

from collections.abc import Callable

from arrowbulk import hookimpl
from arrowbulk.executor import ExecutorPlugin
from arrowbulk.plugins.executors.dask import DaskExecutor


@hookimpl(trylast=True)
def register_executor_plugins(register: Callable[[type[ExecutorPlugin]], None]) -> None:
    register(DaskExecutor)
