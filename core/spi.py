"""The objects plugins implement: Embulk's service-provider interface, on Arrow record batches.

Vocabulary (one word per idea, as in Embulk):

- *config*: the validated mapping a user wrote under ``in:`` or ``out:``;
- *task*: what a plugin resolves its config into (any object it likes), handed back to it
  for every task;
- *task report*: what one task did (:class:`TaskReport`);
- *config diff*: what the next incremental run should change (a JSON-safe mapping).

Job level, an output runs ``transaction(config, schema, task_count, control)``: it resolves
its task, calls ``control.run(task)`` (which runs every task and returns their reports) and
returns a config diff. Task level, the host calls ``open(task, schema, task_index)`` and feeds
the returned :class:`PageOutput` with ``add(batch)``, then ``finish()`` and ``commit()``.
The host owns the task's lifetime: on any error it calls ``abort()``, and ``close()`` always.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import pyarrow as pa

from arrowbulk.cancel import Cancellation
from arrowbulk.errors import RecordError
from arrowbulk.rejects import RejectWriter

ConfigDiff = dict[str, Any]


class Reporter:
    """Where plugins report progress the host shows (the bar or the log lines); a no-op here."""

    def acknowledge(self, rows: int) -> None:
        """``rows`` more records are settled at the destination (accepted or rejected)."""

    def status(self, describe: Callable[[], str]) -> None:
        """``describe()`` says what the output is waiting on ("" for nothing), when asked."""


@dataclass(frozen=True)
class DryRun:
    """What ``arrowbulk validate`` asks of an output's record check beyond counting.

    A check that can show more reads these; its ``finish()`` figures may then hold, besides
    ``records_checked`` and ``invalid``: ``rules`` (reason -> ``{count, meaning, examples}``,
    each example ``[where, value]``), ``changes`` (column -> ``[[before, after], ...]``),
    ``requests`` (request bodies exactly as they would be sent) and ``stops_on_invalid``
    (true when the job as configured stops at an invalid record). The host renders them and
    exits 1 when the job would stop, or when every record is invalid.
    """

    show_requests: int = 0
    show_changes: int = 0
    #: Every invalid record, with all the rules it breaks (``validate --rejects PATH``).
    rejects: RejectWriter | None = None


@dataclass(frozen=True)
class RunContext:
    """Facts about the run that every plugin may need."""

    run_id: str
    # Relative paths in a config are taken relative to the config file, not the working
    # directory, so `arrowbulk run some/dir/job.yml` works from anywhere.
    base_dir: Path
    #: Set when the job must stop (a signal, a failed write, a task's error), with the reason;
    #: a plugin that starts work of its own registers ``on_cancel`` to stop starting it.
    cancellation: Cancellation = field(default_factory=Cancellation, compare=False)
    #: Progress the host shows: records settled, what the output waits on.
    reporter: Reporter = field(default_factory=Reporter, compare=False)
    #: Set by ``arrowbulk validate``: the record check runs over every record and shows more.
    dry_run: DryRun | None = None
    #: ``run --full``: ignore what change detection remembers; send everything, refresh it.
    full_refresh: bool = False
    #: The run reads every row of the source (not an incremental read, not a resume that
    #: skips what an earlier run settled): an output may conclude that a row it does not see
    #: is gone from the source.
    reads_everything: bool = True
    #: The executor running the tasks (``local``: this process's threads; ``dask``: a
    #: cluster's workers, where each task runs with a context of its own).
    executor: str = "local"
    #: The part of each job-wide rate limit one task may use now: 1 in this process; on a
    #: cluster, the share the client hands each running task (it changes as tasks end and
    #: workers come and go). An output with a rate limit multiplies its limit by it.
    share_of_limits: Callable[[], float] = field(default=lambda: 1.0, compare=False)
    #: On an executor's worker: rows of this task an earlier run settled (``--resume``). A
    #: ``skip`` beyond them was settled by an attempt of this run on a worker that died.
    resumed_rows: int = 0

    def resolve(self, path: str) -> Path:
        """A config path, made absolute against the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate


@dataclass
class TaskReport:
    """What one output task did with the rows it was given.

    The counts always add up: ``rows == accepted + sum(rejected.values()) + unsent``.
    """

    rows: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unsent: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def reject(self, reason: str, count: int = 1) -> None:
        """Count ``count`` records rejected for ``reason`` (a short, stable rule name)."""
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def settle(self, rows: int) -> None:
        """Set the rows the task was given and count whatever is unaccounted for as unsent."""
        self.rows = rows
        self.unsent = max(0, rows - self.accepted - self.rejected_total)


TaskT = TypeVar("TaskT")
TaskT_contra = TypeVar("TaskT_contra", contravariant=True)


class Control(Protocol[TaskT_contra]):
    """What an output's ``transaction`` receives to run the tasks."""

    context: RunContext

    def run(self, task: TaskT_contra) -> list[TaskReport]:
        """Run every task with ``task`` and return their reports, in task order."""
        ...

    def details(self, figures: Mapping[str, Any]) -> None:
        """Job-level figures for the summary's details (merged like tasks' details)."""
        ...


class PluginBase(ABC):
    """What inputs and outputs share: a type name and a config schema."""

    #: The name a config uses as ``type:``.
    type_name: ClassVar[str]

    @classmethod
    @abstractmethod
    def config_schema(cls) -> Mapping[str, Any]:
        """The JSON Schema of this plugin's config section; the host validates with it."""


class InputPlugin(PluginBase):
    """Reads a source as Arrow record batches, split into independent tasks."""

    #: True when reading the same config twice yields the same rows in the same order
    #: (files, SQL on files); outputs may then validate everything before sending.
    replayable: ClassVar[bool] = True

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The schema every task's batches have."""

    @abstractmethod
    def task_count(self) -> int:
        """How many tasks the input splits into (files, row groups, ...)."""

    @abstractmethod
    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        """Stream task ``task_index``'s rows; batches must not hold the whole source."""

    def describe_task(self, task_index: int) -> str:
        """A short name for a task, used in messages ("users.parquet row group 3")."""
        return f"task {task_index}"

    def row_count(self) -> int | None:
        """How many rows the input holds, if known without reading it (for a percentage)."""
        return None

    def close(self) -> None:
        """The job is over (its tasks' reads have ended): release what the input held for the
        whole job, such as a database snapshot its tasks share. Called once, in the process
        that ran the job's transaction, whatever the outcome. Default: nothing."""

    def fingerprint(self) -> dict[str, Any] | None:
        """What identifies the rows this input yields (files, sizes, times), for ``--resume``.

        None (the default) means the input cannot be resumed: its rows may differ next time.
        """
        return None


class FilterPlugin(PluginBase):
    """Changes batches between the input and the output, one batch in, one batch out.

    Embulk's filter plugins on Arrow: ``transform_schema`` maps the input's schema when the job
    starts (so preview, validate and the output see the filtered columns), ``filter`` maps each
    batch, row-wise (it sees one batch at a time, never the whole input).
    """

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        self.config = config
        self.context = context

    @abstractmethod
    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        """The schema of the batches ``filter`` returns for batches of ``schema``; raise
        ``ConfigError`` / ``SchemaError`` naming the column when the config does not fit."""

    @abstractmethod
    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch, changed; raise :class:`FilterValueError` for a value it cannot take."""

    def filter_rows(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[SetAside]]:
        """The batch, changed, less the rows this filter cannot take, and those rows' reasons.

        Override it to let the output reject such rows (its reject file, or a stop when it
        does not skip invalid records) instead of stopping the job at the first; the default
        is :meth:`filter`, which stops the job with a :class:`FilterValueError`.
        """
        return self.filter(batch), []


@dataclass(frozen=True)
class SetAside:
    """A row a filter could not take: where it is in the batch the filter got, and why."""

    position: int
    column: str
    value: Any
    rule: str  # a short stable name, e.g. "cast"
    problem: str  # what is wrong, e.g. "cannot be cast to int64"


@dataclass(frozen=True)
class FilterReject:
    """A record that never reached the output's ``add``: a filter set it aside."""

    row: int  # its position in the task's input (before filters)
    column: str
    value: Any
    rule: str
    message: str  # names the filter, the column, the value and the problem
    record: dict[str, Any]  # the row as the input read it
    where: str = ""  # the task's input and the row, for messages ("crm.csv, row 7")

    @property
    def reason(self) -> str:
        return f"{self.column}: {self.rule}"


class FilterValueError(ValueError):
    """A value a filter cannot take: the host adds the task and the row to the message."""

    def __init__(self, column: str, position: int, value: Any, problem: str) -> None:
        super().__init__(f"column {column}: {value!r} {problem}")
        self.column, self.position, self.value, self.problem = column, position, value, problem


class PageOutput(ABC):
    """One task's writer: receives batches, then is committed or aborted."""

    @abstractmethod
    def add(self, batch: pa.RecordBatch) -> None:
        """Take the next batch of the task's rows."""

    def finish(self) -> None:  # noqa: B027 - a no-op is the right default
        """All rows were added: flush what is buffered."""

    def reject(self, records: list[FilterReject]) -> None:
        """Records a filter set aside (they never reach ``add``): count each as rejected
        (``commit``'s report includes them) with its reason, or raise to stop the job.

        The default stops the job: an output without a reject path must not lose them."""
        first = records[0]
        raise RecordError(
            f"{first.where}, {first.message}; fix the value or the filter's config",
            reason=first.reason,
        )

    @abstractmethod
    def commit(self) -> TaskReport:
        """Make the task's output final and report what it did."""

    def abort(self) -> TaskReport | None:
        """Undo what can be undone after an error; report what had been delivered, if known."""
        return None

    def close(self) -> None:  # noqa: B027 - a no-op is the right default
        """Release resources; always called, after commit or abort."""

    def track(self, progress: Callable[[int, int], None]) -> None:  # noqa: B027
        """Report ``progress(settled, in_doubt)`` as rows settle, for ``--resume``.

        ``settled``: rows ``[0, settled)`` of the task are acknowledged or rejected;
        ``in_doubt``: how many rows at or above ``settled`` went to the destination at least
        once (a resume sends them again, so this is the bound on duplicates). Call it *before*
        handing new rows to the destination, so a crash never leaves the bound too low. An
        output that never calls it resumes at task granularity: a committed task is skipped,
        another starts over.
        """

    def skip(self, rows: int) -> None:
        """On resume: the task's first ``rows`` rows were settled by an earlier run; the
        next batch starts at row ``rows``."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume inside a task")


class RecordCheck(ABC):
    """An output's check of every record, run over a replayable input before anything is sent."""

    #: False for a check that only reports (``arrowbulk validate`` runs it; ``run`` skips the
    #: extra read, since the output checks records as they come anyway).
    before_sending: ClassVar[bool] = True

    @abstractmethod
    def add(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        """Check a batch whose first row is row ``first_row`` of task ``task_index``."""

    def finish(self) -> dict[str, Any]:
        """All batches were checked; return figures for the summary."""
        return {}

    def reject(self, records: list[FilterReject], task_index: int) -> None:
        """Records a filter set aside: the default stops the job before anything is sent."""
        first = records[0]
        raise RecordError(
            f"{first.where}, {first.message}. Nothing was sent. Fix the value or the filter's "
            "config, or set the output to skip invalid records",
            reason=first.reason,
        )


class OutputPlugin(PluginBase, Generic[TaskT]):
    """Writes record batches to a destination, as a job of tasks.

    ``TaskT`` is the plugin's task object: what ``check`` resolves the config into, what
    ``transaction`` hands to ``control.run`` and every ``open`` receives (typed, and carrying
    all a task needs: nothing is kept on the plugin object between ``transaction`` and
    ``open``). The default is the config itself, as a dict.
    """

    #: True when a failed job keeps nothing its tasks wrote (files renamed into place only
    #: when every task committed): the summary then counts those rows unsent, not accepted.
    commits_per_job: ClassVar[bool] = False

    def check(self, config: Mapping[str, Any], schema: pa.Schema, context: RunContext) -> TaskT:
        """Resolve ``config`` into a task and check that ``schema`` suits it; send nothing.

        Raises :class:`arrowbulk.errors.SchemaError` or ``ConfigError``. Returns the task
        (by default the config as a dict: override it when ``TaskT`` is anything else).
        """
        return cast(TaskT, dict(config))

    def record_check(self, task: TaskT, schema: pa.Schema) -> RecordCheck | None:
        """A check of every record to run before the first send, or None for none."""
        return None

    def transaction(
        self,
        config: Mapping[str, Any],
        schema: pa.Schema,
        task_count: int,
        control: Control[TaskT],
    ) -> ConfigDiff:
        """Run the job: resolve the task, ``control.run(task)``, return a config diff."""
        task = self.check(config, schema, control.context)
        control.run(task)
        return {}

    @abstractmethod
    def open(self, task: TaskT, schema: pa.Schema, task_index: int) -> PageOutput:
        """Start task ``task_index`` and return the writer its batches go to."""

    def open_remote(
        self, task: TaskT, schema: pa.Schema, task_index: int, context: RunContext
    ) -> PageOutput:
        """``open`` on an executor's worker (``exec: {type: dask}``), in a new plugin object,
        with the worker's own ``context`` (its cancellation, ``share_of_limits``). ``task``
        came by value (pickled): what ``transaction`` kept on it that cannot travel (threads,
        connections, open files) must be left out of its pickled state and made here. A
        ``skip(rows)`` that follows carries rows an attempt on a lost worker settled: count
        them in the task's report if the output can (else they count unsent).
        Default: ``open`` (fine for a task object that is plain data)."""
        return self.open(task, schema, task_index)

    def resume_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config keys a resume must not change (default: all; secrets never included)."""
        return {k: v for k, v in config.items() if not hasattr(v, "reveal")}

    def cleanup(
        self, task: TaskT, schema: pa.Schema, task_count: int, reports: list[TaskReport]
    ) -> None:
        """After every task committed: remove what the job no longer needs."""


@dataclass(frozen=True)
class Command:
    """A CLI subcommand a plugin adds (``arrowbulk <name> ...``)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
