"""``exec: {type: dask}``: each task on a worker of a Dask distributed cluster.

``address: tcp://host:8786`` uses a running cluster; ``workers: N`` starts a LocalCluster of N
worker processes on this machine for the job (``threads_per_worker`` tasks at once on each).
The client (this process) keeps the job level (see :mod:`arrowbulk.executor`); the cluster
runs each task as a :class:`~arrowbulk.executor.RemoteTask`.

What the tasks share goes through the scheduler, so it outlives any worker: a Dask
``Variable`` per task holds its settled watermark (a task retried after its worker died
skips what the dead attempt settled), one holds each running task's share of the job-wide
rate limits (the client sets it to 1 / tasks running, as tasks end and workers come and go),
and one the reason the job is stopping. Dask retries a task whose worker died (up to the
scheduler's ``allowed-failures``); a task that fails on its own is not retried.

``dask`` and ``distributed`` come with ``pip install 'arrowbulk[dask]'``; this module imports
them only when the executor runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from arrowbulk import (
    ConfigError,
    ExecutorPlugin,
    JobError,
    RemoteTask,
    RunContext,
    TaskBoard,
    TaskOutcome,
    TaskReport,
)

log = logging.getLogger(__name__)

#: How often the client looks for ended tasks; the job's stop, the tasks' share and their
#: watermarks are taken from the scheduler every PUBLISH_SECONDS.
POLL_SECONDS = 0.05
PUBLISH_SECONDS = 0.25


class DaskBoard(TaskBoard):
    """A job's :class:`TaskBoard` in the scheduler's Variables (picklable: names only)."""

    def __init__(self, run_id: str, client: Any = None) -> None:
        self.prefix = f"arrowbulk-{run_id}"
        self.client = client  # the job's client; on a worker, the worker's own (None here)

    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "client": None}

    def attach(self) -> None:
        """The worker's client, taken in the task's thread (other threads cannot find it)."""
        from distributed import get_client

        self.client = get_client()

    def _variable(self, name: str) -> Any:
        from distributed import Variable

        return Variable(f"{self.prefix}-{name}", client=self.client)

    def _get(self, name: str, default: Any) -> Any:
        try:
            return self._variable(name).get(timeout=0.5)
        except TimeoutError:
            return default

    def settled(self, task_index: int) -> int:
        return int(self._get(f"settled-{task_index}", 0))

    def publish(self, task_index: int, settled: int, in_doubt: int) -> None:
        from distributed import Queue

        self._variable(f"settled-{task_index}").set(settled)
        Queue(f"{self.prefix}-progress", client=self.client).put((task_index, settled, in_doubt))

    def progress(self) -> list[tuple[int, int, int]]:
        """The watermarks tasks published since the last call, oldest first."""
        from distributed import Queue

        queue = Queue(f"{self.prefix}-progress", client=self.client)
        size = queue.qsize()
        return [tuple(item) for item in queue.get(batch=size)] if size else []

    def share(self) -> float:
        return float(self._get("share", 1.0))

    def set_share(self, share: float) -> None:
        self._variable("share").set(share)

    def stopping(self) -> BaseException | None:
        reason = self._get("stop", "")
        return JobError(f"the job is stopping: {reason}") if reason else None

    def stop(self, reason: str) -> None:
        self._variable("stop").set(reason)

    def start(self, tasks: Mapping[int, int]) -> None:
        """Every Variable set before a task reads it (reading an unset one waits, and the
        scheduler logs the timeout as an error); each task's mark where earlier runs left it."""
        self.stop("")
        self.set_share(1.0)
        for index, settled in tasks.items():
            self._variable(f"settled-{index}").set(settled)

    def clear(self, tasks: Mapping[int, int]) -> None:
        for name in ("share", "stop", *(f"settled-{i}" for i in tasks)):
            self._variable(name).delete()


class DaskExecutor(ExecutorPlugin):
    """``exec: {type: dask, address: ...}`` or ``exec: {type: dask, workers: N}``."""

    type_name = "dask"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {
            "type": "object",
            "properties": {
                "address": {
                    "type": "string",
                    "pattern": "^(tcp|tls|inproc|ucx)://",
                    "description": "a running Dask scheduler, e.g. tcp://10.0.0.5:8786",
                },
                "workers": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 256,
                    "description": "start a LocalCluster of this many worker processes here",
                },
                "threads_per_worker": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 64,
                    "default": 1,
                    "description": "tasks one worker of the LocalCluster runs at once",
                },
            },
        }

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        if ("address" in config) == ("workers" in config):
            raise ConfigError(
                "exec: the dask executor takes either address: tcp://HOST:PORT (a running "
                "cluster) or workers: N (a LocalCluster here), and not both"
            )
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(
                "exec.type dask: dask is not installed; pip install 'arrowbulk[dask]'"
            ) from None
        self._client: Any = None
        self._cluster: Any = None

    def _connect(self) -> Any:
        from distributed import Client, LocalCluster

        # distributed logs each worker's and nanny's start and stop at INFO: not the job's news.
        logging.getLogger("distributed").setLevel(logging.WARNING)

        if "address" in self.config:
            try:
                self._client = Client(self.config["address"], set_as_default=False, timeout=30)
            except OSError as error:
                raise JobError(
                    f"exec.address: cannot reach the Dask scheduler at {self.config['address']}: "
                    f"{error}"
                ) from None
            return self._client
        self._cluster = LocalCluster(
            n_workers=self.config["workers"],
            threads_per_worker=self.config.get("threads_per_worker", 1),
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        self._client = Client(self._cluster, set_as_default=False)
        return self._client

    def run(
        self,
        work: Callable[[TaskBoard], RemoteTask],
        tasks: Mapping[int, int],
        on_outcome: Callable[[TaskOutcome], None],
        on_progress: Callable[[int, int, int], None],
    ) -> None:
        client = self._client or self._connect()
        board = DaskBoard(self.context.run_id, client)
        board.start(tasks)
        remote = work(board)
        pending = {
            index: client.submit(remote, index, key=f"{board.prefix}-task-{index}", pure=False)
            for index in tasks
        }
        futures = list(pending.values())
        share, stopped, looked = 0.0, False, 0.0
        try:
            while pending:
                if time.monotonic() - looked >= PUBLISH_SECONDS:  # the scheduler, not each poll
                    looked = time.monotonic()
                    cancellation = self.context.cancellation
                    if cancellation.is_cancelled() and not stopped:
                        board.stop(str(cancellation.reason or "stopped"))
                        stopped = True
                    slots = sum(client.nthreads().values()) or 1
                    running = max(1, min(len(pending), slots))
                    if 1 / running != share:
                        share = 1 / running
                        board.set_share(share)
                    for index, settled, in_doubt in board.progress():
                        on_progress(index, settled, in_doubt)
                done = [index for index, future in pending.items() if future.done()]
                if not done:
                    time.sleep(POLL_SECONDS)
                for index in done:
                    on_outcome(self._outcome(pending.pop(index), index, board, tasks[index]))
            for index, settled, in_doubt in board.progress():  # the last marks, in order
                on_progress(index, settled, in_doubt)
        finally:
            unfinished = [future for future in futures if not future.done()]
            if unfinished:
                client.cancel(unfinished)
            board.clear(tasks)

    @staticmethod
    def _outcome(future: Any, index: int, board: DaskBoard, resumed: int) -> TaskOutcome:
        if future.status == "finished":
            outcome: TaskOutcome = future.result()
            return outcome
        error = future.exception()
        report = TaskReport()
        # Settled by attempts whose accounts are lost with their workers: counted unsent.
        report.settle(board.settled(index) - resumed)
        return TaskOutcome(
            index,
            report,
            0,
            0,
            report.rows,
            JobError(f"task {index} failed on the Dask cluster: {type(error).__name__}: {error}"),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
