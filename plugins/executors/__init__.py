"""The ``dask`` executor (``local``, the default, is the host's own: :mod:`arrowbulk.executor`)."""

from collections.abc import Callable

from arrowbulk import ExecutorPlugin, hookimpl
from arrowbulk.plugins.executors.dask import DaskExecutor


@hookimpl(trylast=True)
def register_executor_plugins(register: Callable[[type[ExecutorPlugin]], None]) -> None:
    register(DaskExecutor)
