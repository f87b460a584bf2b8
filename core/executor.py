"""Where a job's tasks run: executor plugins (``exec: {type: ...}``), as Embulk has them.

The job level always stays in the calling process: the input's and output's ``transaction``,
the record check before sending, commit and cleanup, the config diff, the summary and the
state. Only the task level moves: ``local`` (the default) runs tasks on this process's
threads; another executor (``dask``) runs each task as a :class:`RemoteTask` somewhere else.

A :class:`RemoteTask` carries the plugins' classes and configs by value, and the output's task
object (which must then pickle: no threads, no open files). On its worker it builds the input,
the filters and a fresh output, runs the task's whole lifecycle (open, skip what an earlier
attempt settled, add every batch, finish, commit or abort, close) and returns the task's
report. While it runs, it publishes its settled watermark to its :class:`TaskBoard`, so that an
attempt retried after its worker died skips the rows the dead attempt settled (resending at
most its in-flight window), and it reads its share of the job's rate limits from the board.
"""

from __future__ import annotations

import pickle
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from arrowbulk.cancel import Cancellation
from arrowbulk.errors import JobError
from arrowbulk.filtering import FilteredInput, OnReject
from arrowbulk.incremental import Incremental, IncrementalInput
from arrowbulk.lifecycle import TaskScope
from arrowbulk.secret import shipping
from arrowbulk.spi import (
    FilterPlugin,
    FilterReject,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    PluginBase,
    RunContext,
    TaskReport,
)


class TaskBoard(ABC):
    """What the tasks of one remote job share with the client while they run."""

    def attach(self) -> None:  # noqa: B027 - most boards need nothing here
        """On the worker, in the task's own thread, before the board is used."""

    @abstractmethod
    def settled(self, task_index: int) -> int:
        """Rows of the task an earlier attempt settled (0 for a first attempt)."""

    @abstractmethod
    def publish(self, task_index: int, settled: int, in_doubt: int) -> None:
        """The task's watermark (``settled``; ``in_doubt`` rows above it went out), for an
        attempt that may follow this one and for the client's resume state."""

    @abstractmethod
    def share(self) -> float:
        """The part of each job-wide rate limit one task may use now (0 < share <= 1)."""

    @abstractmethod
    def stopping(self) -> BaseException | None:
        """The reason the job is stopping, once the client has said so."""


@dataclass
class TaskOutcome:
    """One task as its attempt ended: the report and the rows behind it."""

    index: int
    report: TaskReport
    rows: int  # rows handed to ``add`` by this attempt
    aside: int  # rows filters set aside (handed to the output's reject path)
    earlier: int  # rows an earlier attempt in this run settled (skipped by this one)
    error: BaseException | None = None
    last_record: tuple[Any, ...] | None = None  # an incremental read's greatest row


@dataclass
class Plugins:
    """What a remote task builds its plugins from."""

    input_class: type[InputPlugin]
    input_config: Mapping[str, Any]
    filters: Sequence[tuple[type[FilterPlugin], Mapping[str, Any]]]
    output_class: type[OutputPlugin[Any]]
    task: Any  # the output's task object
    #: An incremental read: rows after its last record only; the task reports its greatest.
    incremental: Incremental | None = None


def pack(plugins: Plugins) -> bytes:
    """``plugins`` by value (cloudpickle: the output's task may hold compiled closures),
    secrets included: the workers need them to send."""
    import cloudpickle  # comes with an executor's extra (dask); local runs never pack

    with shipping():
        return bytes(cloudpickle.dumps(plugins))


#: How often a remote task publishes its watermark and looks for the client's stop.
PUBLISH_SECONDS = 0.25


@dataclass
class RemoteTask:
    """One job's task work, shipped by value to wherever an executor runs it."""

    #: The plugins, their configs and the output's task object, packed by :func:`pack`.
    payload: bytes = field(repr=False)
    schema: pa.Schema
    run_id: str
    base_dir: Path
    grace_seconds: float
    executor: str
    board: TaskBoard = field(repr=False)
    #: Rows of each task an earlier run settled (``--resume``): skipped, not counted again.
    resumed: Mapping[int, int] = field(default_factory=dict)

    def __call__(self, index: int) -> TaskOutcome:
        self.board.attach()
        if self.board.stopping() is not None:  # queued when the job stopped: read nothing
            error = TaskCancelled(f"task {index} not started: the job is stopping")
            return TaskOutcome(index, TaskReport(), 0, 0, 0, error)
        cancellation = Cancellation(self.grace_seconds)
        resumed = self.resumed.get(index, 0)
        context = RunContext(
            self.run_id,
            self.base_dir,
            cancellation,
            reads_everything=not self.resumed,
            executor=self.executor,
            share_of_limits=self.board.share,
            resumed_rows=resumed,
        )
        import cloudpickle

        plugins: Plugins = cloudpickle.loads(self.payload)
        source: InputPlugin = plugins.input_class(plugins.input_config, context)
        tracked = None
        if plugins.incremental is not None:
            source = tracked = IncrementalInput(source, plugins.incremental)
        if plugins.filters:
            filters = [cls(config, context) for cls, config in plugins.filters]
            source = FilteredInput(source, filters)
        skip = max(resumed, self.board.settled(index))
        watermark = [skip, skip]  # settled, in doubt
        done, moved = threading.Event(), threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(index, watermark, done, moved, cancellation), daemon=True
        )
        watcher.start()
        fed = Fed()
        scope: TaskScope | None = None
        try:
            output = plugins.output_class()
            scope = TaskScope(output.open_remote(plugins.task, self.schema, index, context))
            page = scope.page

            def track(settled: int, in_doubt: int) -> None:
                watermark[0], watermark[1] = settled, in_doubt
                moved.set()

            page.track(track)
            if skip:
                page.skip(skip)
            feed(page, source, index, skip, fed, cancellation)
            report = scope.commit()
            report.settle(fed.rows + fed.aside + skip - resumed)
            scope.__exit__(None, None, None)
            last = tracked.tracker.last if tracked is not None else None
            return TaskOutcome(index, report, fed.rows, fed.aside, skip - resumed, None, last)
        except Exception as error:
            cancellation.cancel(error)
            partial = aborted(scope, error, fed.rows + fed.aside + skip - resumed)
            return TaskOutcome(
                index, partial, fed.rows, fed.aside, skip - resumed, picklable(error)
            )
        finally:
            done.set()
            moved.set()
            watcher.join()
            self.board.publish(index, watermark[0], watermark[1])

    def _watch(
        self,
        index: int,
        watermark: list[int],
        done: threading.Event,
        moved: threading.Event,
        cancellation: Cancellation,
    ) -> None:
        """Publish the watermark as soon as it moves (a retry resends only what was in flight,
        not what was settled since the last publication); stop the task when the client
        stops the job."""
        published, asked = list(watermark), time.monotonic()
        while not done.is_set():
            moved.wait(PUBLISH_SECONDS)
            moved.clear()
            if watermark != published:
                published = list(watermark)
                self.board.publish(index, *published)
            if time.monotonic() - asked >= PUBLISH_SECONDS:
                asked = time.monotonic()
                reason = self.board.stopping()
                if reason is not None and not cancellation.is_cancelled():
                    cancellation.cancel(reason)


def aborted(scope: TaskScope | None, error: BaseException, rows: int) -> TaskReport:
    """Abort and close a failed task (a failure of either noted on ``error``); its partial
    report, settled over the ``rows`` it was given."""
    if scope is not None:
        try:
            scope.__exit__(type(error), error, error.__traceback__)  # abort, close
        except BaseException as cleanup_error:  # noted on the error that stops the task
            error.add_note(f"cleanup failed too: {cleanup_error!r}")
    partial = scope.partial if scope is not None and scope.partial else TaskReport()
    partial.settle(rows)
    return partial


@dataclass
class Fed:
    """Rows one task handed to its page so far (read by the error path too)."""

    rows: int = 0
    aside: int = 0


def feed(
    page: PageOutput,
    source: InputPlugin,
    index: int,
    skip: int,
    fed: Fed,
    cancellation: Cancellation,
    count: Callable[[int], None] | None = None,
) -> None:
    """Every batch of task ``index`` after its first ``skip`` rows to ``page``, then finish.

    Rows filters set aside go to the page's reject path (those before ``skip`` were handled
    by the run or attempt that settled them)."""

    def set_aside(records: list[FilterReject], kept_before: int) -> None:
        if kept_before < skip:
            return
        if count is not None:
            count(len(records))
        fed.aside += len(records)
        page.reject(records)

    # Looked at before each read, not after: a task started while the job stops reads
    # nothing (a batch read and dropped is held by the error's traceback until the job
    # ends: 38 tasks of a 2M-user file once held 500 MB that way).
    stopped = TaskCancelled(f"task {index} stopped: the job is stopping")
    if cancellation.is_cancelled():
        raise stopped
    for batch in skip_rows(read_task(source, index, set_aside), skip):
        fed.rows += batch.num_rows
        if count is not None:
            count(batch.num_rows)
        page.add(batch)
        if cancellation.is_cancelled():
            raise stopped
    page.finish()


class TaskCancelled(JobError):
    """A task stopped because the job is stopping (the job's own reason is reported)."""


def read_task(source: InputPlugin, index: int, on_reject: OnReject) -> Iterator[pa.RecordBatch]:
    """A task's batches; rows filters set aside go to ``on_reject``."""
    if isinstance(source, FilteredInput):
        return source.read_rows(index, on_reject)
    return source.read(index)


def skip_rows(batches: Iterator[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    """Drop the first ``skip`` rows (settled by an earlier run or attempt)."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield batch.slice(skip) if skip else batch
        skip = 0


class ExecutorPlugin(PluginBase):
    """Runs a job's tasks. ``exec: {type: NAME, ...}`` picks one; its keys beside the host's
    own (``max_threads``, ``shutdown_timeout``, ``spool_dir``) are its config."""

    #: True: the host runs the tasks on its own threads (``run`` is not called).
    in_process: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        self.config = config
        self.context = context

    def run(
        self,
        work: Callable[[TaskBoard], RemoteTask],
        tasks: Mapping[int, int],
        on_outcome: Callable[[TaskOutcome], None],
        on_progress: Callable[[int, int, int], None],
    ) -> None:
        """Run ``work(board)(index)`` for every index of ``tasks`` (index -> rows an earlier
        run settled: a task's watermark starts there); call ``on_progress(index, settled,
        in_doubt)`` as tasks publish their watermarks and ``on_outcome`` as each ends (both
        in the calling thread). Returns when every task has ended; stops starting tasks and
        tells the running ones to stop once ``context.cancellation`` is set. Every executor
        not ``in_process`` implements it."""
        raise NotImplementedError(f"the {self.type_name} executor does not implement run()")

    def close(self) -> None:
        """Release what ``run`` started (a cluster of its own)."""


class LocalExecutor(ExecutorPlugin):
    """``exec: {type: local}``, the default: tasks on this process's threads."""

    type_name = "local"
    in_process = True

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object", "properties": {}}


def picklable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling (to travel back), else a JobError."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return JobError(f"{type(error).__name__}: {error}")
    return error
