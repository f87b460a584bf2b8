"""What the tasks of one insider job share, and the steps every pass over a batch takes.

:class:`Checked` is the output's task object (config resolved, columns planned, normalizer
built); :class:`InsiderJob` holds what lives for a run (delivery, the reject file, the age
ticker). ``prepare_batch`` is the one way a batch becomes checked-ready columns, for the
record check, the dry run and the pages alike.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa

from arrowbulk import (
    ArrowbulkError,
    DryRun,
    FilterReject,
    JobError,
    RejectWriter,
    RunContext,
    check_writable_folder,
    source_record,
    write_atomically,
)
from arrowbulk.plugins.insider.columns import Plan, plan_columns, role_of
from arrowbulk.plugins.insider.config import InsiderTask, resolve
from arrowbulk.plugins.insider.delivery import Delivery
from arrowbulk.plugins.insider.encode import Encoder
from arrowbulk.plugins.insider.fingerprints import open_store
from arrowbulk.plugins.insider.layout import identifier_group, layout
from arrowbulk.plugins.insider.normalize import ColumnChanges, Normalizer, rule_of
from arrowbulk.plugins.insider.operations import Takes
from arrowbulk.plugins.insider.prepare import Prepared, prepare
from arrowbulk.plugins.insider.spec import load_spec
from arrowbulk.plugins.insider.validate import Issue, RecordValidator


def encoders(plan: Plan) -> tuple[Encoder, Encoder | None]:
    """The encoder of a plan's user (or event) objects and, for events only, of each event's
    user (a request groups a user's events under one object)."""
    keys = Encoder(identifier_group(plan)) if plan.operation.spec.takes is Takes.EVENTS else None
    return Encoder(layout(plan)), keys


class AgedRequests(Protocol):
    """A page, as the age ticker sees it."""

    def flush_if_older_than(self, max_wait: float) -> None: ...


class InsiderJob:
    """What the tasks of one job share."""

    def __init__(
        self, checked: Checked, context: RunContext, reject_path: Path | None = None
    ) -> None:
        self.checked = checked
        #: Made by open_remote on an executor's worker: one task's job there, its rejects in
        #: a part file the client merges (see :func:`merge_reject_parts`).
        self.remote = reject_path is not None
        self.resumed_rows = context.resumed_rows  # settled by an earlier run (--resume)
        self.task = task = checked.task
        self.plan = plan = checked.plan
        self.cancellation = cancellation = context.cancellation
        self.reporter = context.reporter
        self.spec = load_spec()
        self.encoder, self.key_encoder = encoders(plan)
        self.store = open_store(task, plan, context.full_refresh)  # only_changed
        self.rejects = RejectWriter(reject_path or task.reject_file, task.run_id)
        share = context.share_of_limits if self.remote else None
        self.delivery = Delivery(task, self.rejects, context.reporter, share)
        context.reporter.status(self.delivery.waiting_on)
        # The host stops the job (a signal, a failed state write, another task's error): stop
        # starting requests at once; those in flight are awaited until the deadline.
        cancellation.on_cancel(self._stop)
        self.delivery.on_fatal = cancellation.cancel
        self.prevalidated = False
        self.pages: set[AgedRequests] = set()
        self.pages_lock = threading.Lock()
        self._ticker = threading.Thread(
            target=self._flush_old_requests, name="arrowbulk-insider-age", daemon=True
        )
        self._ticker.start()

    def _stop(self, reason: BaseException) -> None:
        self.delivery.fail(
            reason
            if isinstance(reason, ArrowbulkError)
            else JobError(f"the job is stopping: {reason!r}")
        )

    def close(self) -> None:
        self.delivery.close()
        self.rejects.close()

    def _flush_old_requests(self) -> None:
        """Send a request whose oldest record has waited max_wait, even if the input is slow."""
        interval = min(1.0, self.task.max_wait / 4)
        while not self.delivery.stop.wait(interval):
            with self.pages_lock:
                pages = list(self.pages)
            for page in pages:
                page.flush_if_older_than(self.task.max_wait)


@dataclass(frozen=True)
class Checked:
    """The output's task object: the resolved config, the column plan and the normalizer;
    during a run, the job the tasks share (``open`` gets it from here, not from the plugin)."""

    task: InsiderTask
    plan: Plan
    normalizer: Normalizer
    #: Compiled once per job (schemas to Arrow rules, a regex trial each): stateless, shared
    #: by every task's page and record check.
    validator: RecordValidator
    dry_run: DryRun | None = None
    job: InsiderJob | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The job (threads, connections, open files) stays in the process that made it; a
        # task opened on an executor's worker makes its own (InsiderOutput.open_remote).
        return {**self.__dict__, "job": None}


def check_job(config: Mapping[str, Any], schema: pa.Schema, context: RunContext) -> Checked:
    task = resolve(config, context)
    check_writable_folder(task.reject_file.parent, "out.reject_file")
    spec = load_spec()
    # The plan sees the columns as normalized (a yes/no text column arrives as booleans).
    rules = {name: rule_of(role_of(name, task, spec)[1]) for name in schema.names}
    normalizer = Normalizer(schema, rules, task.normalize)
    plan = plan_columns(normalizer.schema, task, spec)
    return Checked(task, plan, normalizer, RecordValidator(plan, task, spec), context.dry_run)


def prepare_columns(
    plan: Plan, batch: pa.RecordBatch, check_only: bool = False
) -> dict[str, Prepared]:
    """Each planned column prepared as it is (no normalization)."""
    return {c.name: prepare(c, batch.column(c.name), check_only) for c in plan.columns}


def prepare_batch(
    checked: Checked, batch: pa.RecordBatch, check_only: bool = False
) -> tuple[dict[str, Prepared], dict[str, ColumnChanges]]:
    """The batch normalized, then each column prepared; with what normalization changed.
    ``check_only``: for validation alone (the encoder refuses such columns)."""
    normalized = checked.normalizer.apply(batch)
    prepared = prepare_columns(checked.plan, normalized.batch, check_only)
    for name, changes in normalized.changes.items():
        if changes.errors is not None:
            prepared[name] = prepared[name].with_errors(changes.errors, "boolean")
        if changes.forms:
            prepared[name] = replace(prepared[name], forms=changes.forms)
    return prepared, normalized.changes


def write_filter_reject(rejects: RejectWriter, task_index: int, record: FilterReject) -> None:
    """A record a filter set aside, as a reject line (stage ``filter``)."""
    rejects.write(
        task=task_index,
        row=record.row,
        stage="filter",
        column=record.column,
        rule=record.rule,
        message=record.message,
        record=record.record,
    )


def write_reject(
    rejects: RejectWriter,
    task_index: int,
    rows: np.ndarray,
    batch: pa.RecordBatch,
    failures: list[Issue],
) -> None:
    """One invalid record (``rows``: each batch row's position in the task): its first
    failure in the line's keys, every failure listed."""
    issue = failures[0]
    record = source_record(batch, issue.row)
    rejects.write(
        task=task_index,
        row=int(rows[issue.row]),
        stage="validation",
        column=issue.column,
        rule=issue.rule,
        message=issue.message,
        record=record,
        failures=(
            [{"column": f.column, "rule": f.rule, "message": f.message} for f in failures]
            if len(failures) > 1
            else None
        ),
    )


def nonempty(**figures: dict[str, int]) -> dict[str, dict[str, int]]:
    return {key: dict(value) for key, value in figures.items() if value}


def row_label(task_index: int, row: int) -> str:
    return f"row {row}" + (f" of task {task_index}" if task_index else "")


def reject_part(path: Path, task_index: int) -> Path:
    """Where task ``task_index`` writes its rejects on an executor's worker."""
    return path.with_name(f"{path.name}.task-{task_index:05d}")


def merge_reject_parts(path: Path, task_count: int) -> None:
    """Append the tasks' reject parts to the job's reject file, in task order, and remove
    them (a part of a lost attempt holds only rows its retry skipped: see
    :func:`earlier_attempt`)."""
    parts = [part for i in range(task_count) if (part := reject_part(path, i)).exists()]
    if not parts:
        return
    try:
        with path.open("ab") as merged:
            for part in parts:
                merged.write(part.read_bytes())
            merged.flush()
            os.fsync(merged.fileno())
    except OSError as error:
        raise JobError(
            f"out.reject_file: cannot add the workers' rejects to {path}: "
            f"{error.strerror or error}; they are in {parts[0].name} and its siblings"
        ) from None
    for part in parts:
        part.unlink(missing_ok=True)


def earlier_attempt(part: Path, rows: int, base: int = 0) -> dict[str, int]:
    """The rejects, by reason, of rows ``[base, rows)`` of a task, which an attempt on a lost
    worker settled (rows below ``base`` an earlier run settled: their lines stay, uncounted);
    the lines of later rows (the retry does them again) are removed.

    Its lines below the watermark were made durable before the watermark moved past them."""
    if not part.exists():
        return {}
    kept: list[bytes] = []
    reasons: dict[str, int] = {}
    for line in part.read_bytes().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the last line, cut by the worker's death: its row is above the mark
        if not isinstance(entry, dict) or entry.get("row", -1) >= rows:
            continue
        kept.append(line)
        stage, column, rule = entry.get("stage"), entry.get("column"), str(entry.get("rule"))
        if stage == "value" or entry.get("row", -1) < base:
            continue  # a value left out of a user that was sent: not a rejected record
        reason = f"{column}: {rule}" if column and stage in {"validation", "filter"} else rule
        reasons[reason] = reasons.get(reason, 0) + 1
    text = b"".join(line + b"\n" for line in kept)
    write_atomically(part, lambda temporary: temporary.write_bytes(text))
    return reasons
