"""Running a pipeline: input tasks feed output tasks through the Embulk lifecycle.

The job: ``output.transaction(config, schema, task_count, control)``. ``control.run(task)``
first runs the output's record check over the whole input when the input can be read twice,
then runs every task, ``max_threads`` at a time, each in a :class:`TaskScope` (abort unless
committed). When one task fails the others stop at their next batch, and every row read is
still accounted for in the summary.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from arrowbulk.cancel import Cancellation, Interrupted
from arrowbulk.checkpoint import Checkpoint, StateLock
from arrowbulk.config import PipelineConfig, validate_section
from arrowbulk.errors import ArrowbulkError, ConfigError, JobError, RecordError, SchemaError
from arrowbulk.executor import (
    ExecutorPlugin,
    Fed,
    Plugins,
    RemoteTask,
    TaskBoard,
    TaskCancelled,
    TaskOutcome,
    aborted,
    feed,
    pack,
    read_task,
)
from arrowbulk.filtering import FilteredInput
from arrowbulk.incremental import Incremental, IncrementalInput
from arrowbulk.lifecycle import TaskScope
from arrowbulk.progress import Progress
from arrowbulk.registry import Registry
from arrowbulk.resources import load_schema
from arrowbulk.spi import (
    DryRun,
    FilterReject,
    InputPlugin,
    OutputPlugin,
    RecordCheck,
    RunContext,
    TaskReport,
)
from arrowbulk.spool import SPOOL_MEMORY_BYTES, Spool, SpooledInput, SpoolParts, spool_folder
from arrowbulk.summary import JobSummary, merge_detail

log = logging.getLogger(__name__)


#: Tasks that may wait for their commit at once (a commit that only waits costs a thread).
COMMIT_THREADS = 64


@dataclass(frozen=True)
class Validation:
    """What ``arrowbulk validate`` found, with nothing sent."""

    schema: pa.Schema
    task_count: int
    record_check: dict[str, Any] | None


class Job:
    """One pipeline, its plugins resolved and configs validated."""

    def __init__(
        self,
        pipeline: PipelineConfig,
        registry: Registry,
        run_id: str | None = None,
        progress: Progress | None = None,
        resume: Path | None = None,
        full_refresh: bool = False,
    ) -> None:
        executor_type = pipeline.exec.get("type", "local")
        if not isinstance(executor_type, str):
            raise ConfigError("exec.type: must be the name of an executor (local, dask)")
        executor_cls = registry.executor_class(executor_type)
        exec_config = validate_section(
            "exec", pipeline.exec, exec_schema(executor_cls.config_schema())
        )
        self.progress = progress or Progress()
        self.context = RunContext(
            run_id or uuid.uuid4().hex[:12],
            pipeline.base_dir,
            Cancellation(grace_seconds=exec_config["shutdown_timeout"]),
            self.progress,
            full_refresh=full_refresh,
            reads_everything=resume is None and not pipeline.input.get("incremental"),
            executor=executor_cls.type_name,
        )
        self.input_type: str = pipeline.input["type"]
        self.output_type: str = pipeline.output["type"]
        input_cls = registry.input_class(self.input_type)
        output_cls = registry.output_class(self.output_type)
        self.input_config = validate_section("in", pipeline.input, input_cls.config_schema())
        self.output_config = validate_section("out", pipeline.output, output_cls.config_schema())
        self.max_threads: int = exec_config.get("max_threads") or os.cpu_count() or 1
        self.spool_dir: str | None = exec_config.get("spool_dir")
        self.input: InputPlugin = input_cls(self.input_config, self.context)
        self.plugin_input = self.input  # the plugin itself, under the wrappers below
        filter_classes = [
            registry.filter_class(config["type"], f"filters[{i}]")
            for i, config in enumerate(pipeline.filters)
        ]
        self.filter_configs = [
            validate_section(f"filters[{i}]", config, cls.config_schema())
            for i, (cls, config) in enumerate(zip(filter_classes, pipeline.filters, strict=True))
        ]
        #: What the input plugin reads (after the last record, for an incremental input); a
        #: spool holds these rows, filters apply on reading.
        self.raw_input = self.input
        self.incremental: IncrementalInput | None = None
        incremental = Incremental.of(self.input_config)
        if incremental is not None:
            self.incremental = IncrementalInput(self.input, incremental)
            self.raw_input = self.input = self.incremental
        self.filters = [
            cls(c, self.context) for cls, c in zip(filter_classes, self.filter_configs, strict=True)
        ]
        if self.filters:
            self.input = FilteredInput(self.raw_input, self.filters)
        self.output: OutputPlugin[Any] = output_cls()
        self.resume = resume
        self.executor: ExecutorPlugin = executor_cls(exec_config, self.context)

    def schema(self) -> pa.Schema:
        """The input's schema, refused when two columns share a name (a CSV header
        ``id,name,name``, ``SELECT 1 AS a, 2 AS a``): every output would keep only one of them."""
        schema = self.input.schema()
        check_column_names(schema, self.input_type)
        return schema

    @property
    def cancellation(self) -> Cancellation:
        return self.context.cancellation

    def _checkpoint(self, task_count: int) -> Checkpoint:
        assert self.resume is not None
        if self.input.replayable:
            fingerprint = self.input.fingerprint()
            if fingerprint is None:
                raise ConfigError(
                    f"--resume: the {self.input_type} input cannot be resumed (its rows may change between runs)"
                )
        else:
            # Read back from the spool beside the state: what the first run spooled is the input.
            fingerprint = {"spooled": True}
        described = {
            "input config": self.input_config,
            "filters": self.filter_configs,
            "input data": fingerprint,
            "output config": self.output.resume_identity(self.output_config),
        }
        return Checkpoint.open(self.resume, described, task_count, self.context.run_id)

    def _sources(self) -> tuple[InputPlugin, Checkpoint | None, Spool | None]:
        """What the tasks read (the input, or its spool), and the resume state if asked for."""
        if self.input.replayable:
            checkpoint = self._checkpoint(self.input.task_count()) if self.resume else None
            return self.input, checkpoint, None
        # In memory while small, unless a resume needs it on disk or workers read its files.
        in_memory = self.resume is None and self.context.executor == "local"
        spool = Spool(
            spool_folder(self.resume, self.spool_dir, self.context),
            SPOOL_MEMORY_BYTES if in_memory else 0,
        )
        earlier = Checkpoint.peek(self.resume) if self.resume else None
        if earlier is not None and earlier.complete:
            return self.input, self._checkpoint(len(earlier.tasks)), None
        recorded = earlier.spool if earlier is not None else None
        if recorded is not None and spool.holds(recorded["rows"]):
            log.info(
                "reading the input from its spool %s (written by an earlier run)", spool.folder
            )
            rows = list(recorded["rows"])
            return (
                self._filtered(SpooledInput(self.raw_input, spool, rows)),
                self._checkpoint(len(rows)),
                spool,
            )
        if earlier is not None and any(t.settled or t.in_doubt for t in earlier.tasks.values()):
            raise ConfigError(
                f"--resume {self.resume}: the input's spool {spool.folder} is missing, and the "
                "query's rows may come in another order now; resuming could skip or repeat the "
                "wrong rows. Start with a new state file"
            )
        # Nothing was sent under an earlier state (if any): the query runs now, once, and its
        # parts (tasks of SPOOL_PART_ROWS rows) decide how the state counts tasks.
        log.debug("running the input once into its spool %s", spool.folder)
        # The input's own rows are spooled; filters apply as the spool is read, so a row a
        # filter sets aside reaches the output's reject path like any other record.
        rows = spool.fill(self.raw_input, self.cancellation)
        checkpoint = None
        if self.resume is not None:
            self.resume.unlink(missing_ok=True)
            checkpoint = self._checkpoint(len(rows))
            checkpoint.record_spool({"rows": rows})
        return self._filtered(SpooledInput(self.raw_input, spool, rows)), checkpoint, spool

    def _filtered(self, source: InputPlugin) -> InputPlugin:
        return FilteredInput(source, self.filters) if self.filters else source

    def validate(self, dry_run: DryRun | None = None) -> Validation:
        """Check the config, the input's schema and, if the output has one, every record."""
        schema = self.schema()
        context = replace(self.context, dry_run=dry_run or DryRun())
        task = self.output.check(self.output_config, schema, context)
        check = self.output.record_check(task, schema)
        figures = None
        try:
            if check is not None:
                figures = ParallelCheck.of(
                    self.output,
                    task,
                    schema,
                    check,
                    self.input,
                    self.max_threads,
                    self.cancellation,
                ).run()
            return Validation(schema, self.input.task_count(), figures)
        finally:
            self.plugin_input.close()

    def run(self) -> JobSummary:
        """Run the job; the summary says how it ended (an error is kept on ``.exception``)."""
        summary = JobSummary(self.context.run_id, self.input_type, self.output_type)
        started = time.monotonic()
        control: _TaskControl | None = None
        lock = StateLock(self.resume) if self.resume else None
        spool: Spool | None = None
        self.progress.start()
        try:
            if lock is not None:
                lock.acquire()
            schema = self.schema()
            source, checkpoint, spool = self._sources()
            task_count = source.task_count()
            self.progress.total = source.row_count()
            summary.tasks = task_count
            if checkpoint is not None and checkpoint.state.complete:
                summary.status = "success"
                summary.details["resume"] = {
                    **checkpoint.figures(),
                    "note": "the job had finished; nothing to do",
                }
                return summary
            if checkpoint is not None and self.incremental is not None:
                tracker = self.incremental.tracker
                if checkpoint.state.input_diff:
                    tracker.restore(checkpoint.state.input_diff, self.incremental.schema())
                checkpoint.record_input_diff(tracker.diff())  # a spooled input: all of it
            control = _TaskControl(self, source, schema, task_count, checkpoint)
            out_diff = self.output.transaction(self.output_config, schema, task_count, control)
            in_diff = self.incremental.tracker.diff() if self.incremental is not None else {}
            summary.config_diff = {
                key: diff for key, diff in (("in", in_diff), ("out", out_diff)) if diff
            }
            self.output.cleanup(control.task, schema, task_count, control.committed_reports())
            if checkpoint is not None:
                checkpoint.finish()
            summary.status = "success"
        except BaseException as error:
            error = self._why_stopped(error)
            summary.status = "interrupted" if isinstance(error, Interrupted) else "failed"
            summary.error = str(error) if isinstance(error, ArrowbulkError) else repr(error)
            summary.exception = error
            if not isinstance(error, Exception):
                raise
        finally:
            self.progress.stop()
            summary.seconds = time.monotonic() - started
            if control is not None:
                control.fill(
                    summary, kept=summary.status == "success" or not self.output.commits_per_job
                )
            if control is not None and control.checkpoint is not None:
                summary.details["resume"] = control.checkpoint.figures()
            if spool is not None and (self.resume is None or summary.status == "success"):
                spool.remove()
            if lock is not None:
                lock.release()
            self.executor.close()
            self.plugin_input.close()
        return summary

    def _why_stopped(self, error: BaseException) -> BaseException:
        """The reason the job was cancelled for (a signal, a failed write), over its echoes."""
        reason = self.cancellation.reason
        if (
            reason is not None
            and reason is not error
            and isinstance(error, ArrowbulkError | KeyboardInterrupt)
        ):
            return reason
        return error


class _TaskControl:
    """The ``control`` an output's transaction calls to run the tasks."""

    def __init__(
        self,
        job: Job,
        source: InputPlugin,
        schema: pa.Schema,
        task_count: int,
        checkpoint: Checkpoint | None,
    ) -> None:
        self.job = job
        self.source = source
        self.checkpoint = checkpoint
        self.context = job.context
        self.schema = schema
        self.task_count = task_count
        self.task: Any = None
        self.reports: list[TaskReport | None] = [None] * task_count
        self.committed = [False] * task_count
        self.rows_read = 0
        self.check_figures: dict[str, Any] | None = None
        self.job_details: dict[str, Any] = {}  # what the output reported for the whole job
        self.check_report: TaskReport | None = None
        self._lock = threading.Lock()
        self.cancellation = job.cancellation
        self._commit_pool: ThreadPoolExecutor | None = None
        self._commit_futures: list[Future[None]] = []

    def run(self, task: Any) -> list[TaskReport]:
        self.task = task
        self._record_check(task)
        if not self.job.executor.in_process:
            return self._run_remote(task)
        threads = max(1, min(self.job.max_threads, self.task_count))
        # Two pools: ``max_threads`` threads feed tasks (the CPU work); committing, which may
        # only wait (for a destination's answers), happens beside them, so a thread moves on to
        # the next task instead of idling one round trip per task.
        with (
            ThreadPoolExecutor(threads, thread_name_prefix="arrowbulk-task") as pool,
            ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="arrowbulk-commit") as commits,
        ):
            self._commit_pool = commits
            futures = [
                pool.submit(self._run_task, task, index, skip)
                for index, skip in self._tasks_to_run().items()
            ]
            _first_error(futures)  # every task fed (or stopped)
            with self._lock:
                futures += self._commit_futures
            first_error = _first_error(futures)
        if first_error is not None:
            raise first_error
        return self.committed_reports()

    def _tasks_to_run(self) -> dict[int, int]:
        """Each task to run, with the rows earlier runs settled of it (``--resume``); a task
        an earlier run committed counts committed, with nothing to do."""
        tasks: dict[int, int] = {}
        for index in range(self.task_count):
            state = self.checkpoint.task(index) if self.checkpoint is not None else None
            if state is not None and state.done:
                self.reports[index] = TaskReport(details={"resumed_tasks_skipped": 1})
                self.committed[index] = True
            else:
                tasks[index] = state.settled if state is not None else 0
        return tasks

    def _task_done(self, index: int, settled: int) -> None:
        """A committed task in the resume state (with the incremental read's progress)."""
        if self.checkpoint is not None:
            self.checkpoint.update(index, settled=settled, done=True)
            if self.job.incremental is not None:
                self.checkpoint.record_input_diff(self.job.incremental.tracker.diff())

    def _run_remote(self, task: Any) -> list[TaskReport]:
        """Every task on the executor's workers; their outcomes accounted here as they end."""
        job = self.job
        filters = [(type(f), c) for f, c in zip(job.filters, job.filter_configs, strict=True)]
        errors: list[BaseException] = []
        tasks = self._tasks_to_run()
        resumed = {index: rows for index, rows in tasks.items() if rows}

        inner = self.source.inner if isinstance(self.source, FilteredInput) else self.source
        incremental = None
        if isinstance(inner, SpooledInput):  # a query, run once here: workers read its spool
            reader: tuple[type[InputPlugin], Mapping[str, Any]] = (SpoolParts, SpoolParts.of(inner))
        elif job.incremental is not None:  # the workers read after the last record
            reader = (type(job.incremental.inner), job.input_config)
            incremental = job.incremental.incremental
        else:
            reader = (type(job.raw_input), job.input_config)
        payload = pack(Plugins(*reader, filters, type(job.output), task, incremental))

        def work(board: TaskBoard) -> RemoteTask:
            return RemoteTask(
                payload,
                self.schema,
                self.context.run_id,
                self.context.base_dir,
                self.cancellation.grace_seconds,
                job.executor.type_name,
                board,
                resumed,
            )

        def on_outcome(outcome: TaskOutcome) -> None:
            read = outcome.rows + outcome.aside + outcome.earlier
            self._count_read(read)
            self.reports[outcome.index] = outcome.report
            if outcome.earlier:
                outcome.report.details["rows_settled_before_a_retry"] = outcome.earlier
            if outcome.last_record is not None and job.incremental is not None:
                job.incremental.tracker.offer(outcome.last_record)
            if outcome.error is None:
                self.committed[outcome.index] = True
                settled = tasks[outcome.index] + outcome.earlier + outcome.rows
                self._task_done(outcome.index, settled)
                return
            errors.append(outcome.error)
            self.cancellation.cancel(outcome.error)

        def on_progress(index: int, settled: int, in_doubt: int) -> None:
            # A mark drained after its task committed is older than the commit's: dropped.
            if self.checkpoint is not None and not self.committed[index]:
                self._track(index, settled, in_doubt)

        job.executor.run(work, tasks, on_outcome, on_progress)
        if errors:  # the task's own error over the others' echo of it
            raise next((e for e in errors if not isinstance(e, TaskCancelled)), errors[0])
        if self.cancellation.is_cancelled():
            raise self.cancellation.reason or JobError("the job is stopping")
        return self.committed_reports()

    def details(self, figures: Mapping[str, Any]) -> None:
        with self._lock:
            for key, value in figures.items():
                self.job_details[key] = merge_detail(self.job_details.get(key), value)

    def committed_reports(self) -> list[TaskReport]:
        return [r for r, ok in zip(self.reports, self.committed, strict=True) if ok and r]

    def fill(self, summary: JobSummary, kept: bool = True) -> None:
        """Add the tasks' reports; ``kept`` False: the job's output was discarded, so what
        the tasks delivered counts unsent."""
        summary.rows_read = self.rows_read
        summary.tasks_committed = sum(self.committed) if kept else 0
        for report in self.reports:
            if report is not None:
                if not kept:
                    report = TaskReport(
                        report.rows,
                        0,
                        dict(report.rejected),
                        report.rows - report.rejected_total,
                        report.details,
                    )
                summary.add_report(report)
        if self.check_figures:
            summary.details["record_check"] = self.check_figures
        for key, value in self.job_details.items():
            summary.details[key] = merge_detail(summary.details.get(key), value)
        if self.check_report is not None:
            summary.add_report(self.check_report)

    def _record_check(self, task: Any) -> None:
        first = self.job.output.record_check(task, self.schema)
        if first is None or not first.before_sending:
            return
        parallel = ParallelCheck.of(
            self.job.output,
            task,
            self.schema,
            first,
            self.source,
            self.job.max_threads,
            self.cancellation,
        )
        try:
            self.check_figures = parallel.run()
        except RecordError:
            # The job stops before sending: the rows checked so far are its whole account.
            report = TaskReport()
            for reason in parallel.reasons:
                report.reject(reason)
            report.settle(parallel.rows)
            self.rows_read, self.check_report = parallel.rows, report
            raise

    def _run_task(self, task: Any, index: int, skip: int) -> None:
        """Feed one task (open, add every batch, finish), then hand it to be committed;
        ``skip``: rows an earlier run settled.

        The host owns the task's lifetime across both: any error aborts it (abort unless
        committed) and close is always called, in :class:`TaskScope`.
        """
        fed = Fed()  # rows handed to the output so far; read by the error path too
        scope: TaskScope | None = None
        try:
            scope = TaskScope(self.job.output.open(task, self.schema, index))
            if self.checkpoint is not None:
                scope.page.track(lambda settled, in_doubt: self._track(index, settled, in_doubt))
                if skip:
                    scope.page.skip(skip)
            feed(scope.page, self.source, index, skip, fed, self.cancellation, self._count_read)
        except BaseException as error:
            self._fail_task(scope, error, index, fed.rows + fed.aside)
            raise
        assert self._commit_pool is not None
        with self._lock:
            self._commit_futures.append(
                self._commit_pool.submit(self._commit_task, scope, index, fed.rows, skip, fed.aside)
            )

    def _commit_task(self, scope: TaskScope, index: int, rows: int, skip: int, aside: int) -> None:
        """``rows`` reached ``add`` (the resume state counts those); ``aside`` more were set
        aside by filters and rejected by the page: the task's account holds both."""
        try:
            report = scope.commit()
        except BaseException as error:
            self._fail_task(scope, error, index, rows + aside)
            raise
        report.settle(rows + aside)
        self.reports[index] = report  # the account first: a failing close cannot lose it
        self.committed[index] = True
        self._task_done(index, skip + rows)
        scope.__exit__(None, None, None)  # close

    def _fail_task(
        self, scope: TaskScope | None, error: BaseException, index: int, rows: int
    ) -> None:
        # The whole job stops for this reason, known before abort() runs.
        self.cancellation.cancel(error)
        self.reports[index] = aborted(scope, error, rows)

    def _track(self, index: int, settled: int, in_doubt: int) -> None:
        """The page's progress into the state; a failed write stops the whole job."""
        assert self.checkpoint is not None
        try:
            self.checkpoint.update(index, settled=settled, in_doubt=in_doubt)
        except JobError as error:
            self.cancellation.cancel(error)
            raise

    def _count_read(self, rows: int) -> None:
        with self._lock:
            self.rows_read += rows
        self.job.progress.add(rows)


def exec_schema(executor_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``exec:`` section's schema: the host's keys, ``type`` and the executor's own."""
    host = load_schema("core", "exec.json")
    properties = {
        **host["properties"],
        "type": {"type": "string", "description": "the executor: local (default) or dask"},
        **executor_schema.get("properties", {}),
    }
    return {**host, "properties": properties, "required": executor_schema.get("required", [])}


def check_column_names(schema: pa.Schema, input_type: str) -> None:
    """Refuse a schema in which two columns share a name, naming them and their positions."""
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(schema.names, 1):
        positions.setdefault(name, []).append(index)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        listing = "; ".join(
            f"{name!r} at columns {', '.join(map(str, where))}" for name, where in repeated.items()
        )
        raise SchemaError(
            f"in ({input_type}): two columns share a name ({listing}); outputs address columns by "
            "name and would keep only one. Rename them (in SQL: give each its own alias, e.g. "
            "AS a_2; in a CSV: its header line)"
        )


class ParallelCheck:
    """The record check over every task, ``threads`` tasks at a time, one check per thread.

    An invalid record stops the tasks after its own; tasks before it run on, so the record
    reported is the one a check in task order would have found first. ``reasons`` lists the
    rule of each invalid record met (each is in the reject file), ``rows`` the rows checked.
    """

    def __init__(
        self,
        source: InputPlugin,
        new_check: Callable[[], RecordCheck],
        threads: int,
        cancellation: Cancellation,
    ) -> None:
        self.source, self.new_check, self.cancellation = source, new_check, cancellation
        self.threads = max(1, min(threads, source.task_count()))
        self.rows = 0
        self.reasons: list[str] = []
        self._errors: dict[int, RecordError] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._checks: list[RecordCheck] = []

    @classmethod
    def of(
        cls,
        output: OutputPlugin[Any],
        task: Any,
        schema: pa.Schema,
        first: RecordCheck,
        source: InputPlugin,
        threads: int,
        cancellation: Cancellation,
    ) -> ParallelCheck:
        """The check ``output`` makes, ``first`` for one thread and a new one per other thread."""
        spare = [first]

        def new_check() -> RecordCheck:
            check = spare.pop() if spare else output.record_check(task, schema)
            assert check is not None
            return check

        return cls(source, new_check, threads, cancellation)

    def run(self) -> dict[str, Any]:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="arrowbulk-check") as pool:
            futures = [pool.submit(self._task, i) for i in range(self.source.task_count())]
            failure = _first_error(futures)
        if self._errors:
            raise self._errors[min(self._errors)]
        if failure is not None:
            raise failure
        figures: dict[str, Any] = {}
        for check in self._checks:
            for key, value in check.finish().items():
                figures[key] = merge_detail(figures.get(key), value)
        return figures

    def _check(self) -> RecordCheck:
        check: RecordCheck | None = getattr(self._local, "check", None)
        if check is None:
            with self._lock:
                check = self.new_check()
                self._checks.append(check)
            self._local.check = check
        return check

    def _task(self, index: int) -> None:
        check, first_row = self._check(), 0

        def set_aside(records: list[FilterReject], kept_before: int) -> None:
            with self._lock:
                self.rows += len(records)
            check.reject(records, index)

        batches = read_task(self.source, index, set_aside)
        while True:
            try:
                batch = next(batches, None)
            except RecordError as error:  # a record a filter set aside, refused by the check
                with self._lock:
                    self._errors[index] = error
                    self.reasons.append(error.reason or "invalid record")
                return
            if batch is None:
                return
            if self.cancellation.is_cancelled():
                raise self.cancellation.reason or JobError("the job is stopping")
            with self._lock:
                if any(failed < index for failed in self._errors):
                    return  # an earlier task has the record to report
                self.rows += batch.num_rows
            try:
                check.add(batch, index, first_row)
            except RecordError as error:
                with self._lock:
                    self._errors[index] = error
                    self.reasons.append(error.reason or "invalid record")
                return
            first_row += batch.num_rows


def _first_error(futures: list[Future[None]]) -> BaseException | None:
    """Wait for every task and return the error that stopped the job, if any."""
    first: BaseException | None = None
    for future in futures:
        error = future.exception()
        if error is None:
            continue
        if first is None or isinstance(first, TaskCancelled):
            first = error
    return first
