"""The insider output plugin: Embulk's lifecycle around validation, encoding and delivery.

Per batch (``add``): prepare the columns, validate every record, encode the valid ones as
user (or event) JSON column-wise, and hand them to the task's :class:`RequestBuilder`; each
request that closes goes to the job's :class:`Delivery`. ``finish`` sends what is left and
waits for the answers; ``commit`` reports the task's account.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from arrowbulk import (
    ArrowbulkError,
    DryRun,
    FilterReject,
    JobError,
    OutputPlugin,
    PageOutput,
    RecordCheck,
    RecordError,
    RejectWriter,
    RunContext,
    TaskReport,
    check_writable_folder,
    load_schema,
)
from arrowbulk.plugins.insider.columns import Plan, plan_columns, role_of
from arrowbulk.plugins.insider.config import InsiderTask, Operation, resolve
from arrowbulk.plugins.insider.delivery import Delivery, Tally
from arrowbulk.plugins.insider.encode import Encoder
from arrowbulk.plugins.insider.layout import identifier_group, layout
from arrowbulk.plugins.insider.normalize import ColumnChanges, Normalizer, rule_of
from arrowbulk.plugins.insider.prepare import Prepared, prepare
from arrowbulk.plugins.insider.requests import Request, RequestBuilder
from arrowbulk.plugins.insider.spec import load_spec
from arrowbulk.plugins.insider.validate import Issue, RecordValidator, Verdict, group_by_row
from arrowbulk.plugins.insider.watermark import Watermark

log = logging.getLogger(__name__)

#: Rows encoded in one step. Larger steps amortise per-call overhead; smaller ones hold less
#: intermediate data. Measured (attributes benchmark, jemalloc; job seconds for 2M users and
#: peak RSS for 200k / 2M): 8192: 14.7 s, 200 / 218 MB; 16384: 12.1 s, 252 / 274 MB;
#: 32768: 10.8-11.4 s, 300 / 322 MB; 65536: 11.3 s, 375 / 406 MB.
CHUNK_ROWS = int(os.environ.get("ARROWBULK_INSIDER_CHUNK_ROWS", "32768"))
#: ... and at most this many bytes of input per step, for wide rows (long arrays, big texts):
#: it bounds a step's memory, and keeps its JSON (up to ~6x the input, for escapes) under
#: the 2 GiB that Arrow's binary arrays address.
CHUNK_BYTES = 256 * 2**20


def steps(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch in slices of at most CHUNK_ROWS rows and about CHUNK_BYTES bytes."""
    rows = CHUNK_ROWS
    if batch.num_rows:
        per_row = batch.nbytes / batch.num_rows
        rows = max(1, min(rows, int(CHUNK_BYTES // max(per_row, 1))))
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


class InsiderJob:
    """What the tasks of one job share."""

    def __init__(self, checked: Checked, context: RunContext) -> None:
        self.checked = checked
        self.task = task = checked.task
        self.plan = plan = checked.plan
        self.cancellation = cancellation = context.cancellation
        self.reporter = context.reporter
        self.spec = load_spec()
        self.encoder = Encoder(layout(plan))
        # Events only: each event's user (a request groups a user's events under one object).
        self.key_encoder = (
            Encoder(identifier_group(plan)) if plan.operation is Operation.EVENTS else None
        )
        self.rejects = RejectWriter(task.reject_file, task.run_id)
        self.delivery = Delivery(task, self.rejects, context.reporter)
        context.reporter.status(self.delivery.waiting_on)
        # The host stops the job (a signal, a failed state write, another task's error): stop
        # starting requests at once; those in flight are awaited until the deadline.
        cancellation.on_cancel(self._stop)
        self.delivery.on_fatal = cancellation.cancel
        self.prevalidated = False
        self.pages: set[InsiderPage] = set()
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
    """The output's task object: the resolved config, the column plan and the normalizer."""

    task: InsiderTask
    plan: Plan
    normalizer: Normalizer
    dry_run: DryRun | None = None


def check_job(config: Mapping[str, Any], schema: pa.Schema, context: RunContext) -> Checked:
    task = resolve(config, context)
    check_writable_folder(task.reject_file.parent, "out.reject_file")
    spec = load_spec()
    # The plan sees the columns as normalized (a yes/no text column arrives as booleans).
    rules = {name: rule_of(role_of(name, task, spec)[1]) for name in schema.names}
    normalizer = Normalizer(schema, rules, task.normalize)
    return Checked(task, plan_columns(normalizer.schema, task, spec), normalizer, context.dry_run)


def prepare_columns(plan: Plan, batch: pa.RecordBatch) -> dict[str, Prepared]:
    """Each planned column prepared as it is (no normalization)."""
    return {c.name: prepare(c, batch.column(c.name)) for c in plan.columns}


def prepare_batch(
    checked: Checked, batch: pa.RecordBatch
) -> tuple[dict[str, Prepared], dict[str, ColumnChanges]]:
    """The batch normalized, then each column prepared; with what normalization changed."""
    normalized = checked.normalizer.apply(batch)
    prepared = prepare_columns(checked.plan, normalized.batch)
    for name, changes in normalized.changes.items():
        if changes.errors is not None:
            prepared[name] = prepared[name].with_errors(changes.errors, "boolean")
    return prepared, normalized.changes


class InsiderOutput(OutputPlugin):
    """``out: {type: insider, ...}``."""

    type_name = "insider"

    def __init__(self) -> None:
        self.job: InsiderJob | None = None

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("insider", "output.json")

    def check(self, config: Mapping[str, Any], schema: pa.Schema, context: RunContext) -> Checked:
        return check_job(config, schema, context)

    def record_check(self, task: Any, schema: pa.Schema) -> RecordCheck | None:
        checked: Checked = task
        if checked.dry_run is not None:
            return InsiderDryRun(checked, checked.dry_run)
        if checked.task.skip_invalid_records:
            return None  # records are checked as they come; the invalid ones are rejected
        return InsiderRecordCheck(checked, self.job)

    def transaction(
        self, config: Mapping[str, Any], schema: pa.Schema, task_count: int, control: Any
    ) -> dict[str, Any]:
        checked = self.check(config, schema, control.context)
        self.job = InsiderJob(checked, control.context)
        try:
            control.run(checked)
        finally:
            self.job.close()
        return {}

    def open(self, task: Any, schema: pa.Schema, task_index: int) -> PageOutput:
        assert self.job is not None, "open() before transaction()"
        return InsiderPage(self.job, task_index)

    def resume_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What decides which rows go where; tuning (timeouts, limits, retries) may change."""
        keys = (
            "partner_name",
            "endpoint",
            "export_mode",
            "attribute_operation",
            "audience_operation",
            "custom_identifier_fields",
            "trigger_data_stream",
        )
        return {key: config.get(key) for key in keys}


class InsiderRecordCheck(RecordCheck):
    """Every record validated before the first request, so a bad last row sends nothing."""

    def __init__(self, checked: Checked, job: InsiderJob | None) -> None:
        self.checked, self.job = checked, job
        self.validator = RecordValidator(checked.plan, checked.task, load_spec())
        self.rows = 0

    def add(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        for step in steps(batch):
            self._add_step(step, task_index, first_row)
            first_row += step.num_rows

    def _add_step(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        prepared, _ = prepare_batch(self.checked, batch)
        verdict = self.validator.validate(prepared, batch.num_rows)
        self.rows += batch.num_rows
        if verdict.issues:
            failures = verdict.by_row()[0]
            issue = failures[0]
            if self.job is not None:
                _write_reject(self.job.rejects, task_index, first_row, batch, failures)
            raise RecordError(
                f"{_where(task_index, first_row + issue.row)}, column {issue.column or '-'}, "
                f"rule {issue.rule}: {issue.message}. Nothing was sent. Fix the data (arrowbulk "
                "validate lists every invalid record and rule), or set skip_invalid_records: "
                "true to send the valid records and reject the others",
                reason=issue.reason,
            )

    def finish(self) -> dict[str, Any]:
        if self.job is not None:
            self.job.prevalidated = True
        return {"records_checked": self.rows, "invalid": 0}


#: Example values per rule in ``arrowbulk validate``'s table.
EXAMPLES_PER_RULE = 3


class InsiderDryRun(RecordCheck):
    """``arrowbulk validate``: every record against every rule; what would be sent."""

    before_sending = False

    def __init__(self, checked: Checked, dry_run: DryRun) -> None:
        self.checked, self.dry_run = checked, dry_run
        self.validator = RecordValidator(checked.plan, checked.task, load_spec())
        self.meanings = {c.name: _meaning(c.schema) for c in checked.plan.columns}
        self.rows = 0
        self.invalid = 0
        self.rules: dict[str, dict[str, Any]] = {}
        self.normalized: dict[str, int] = {}
        self.changes: dict[str, list[list[Any]]] = {}
        self.dropped: dict[str, int] = {}
        self.requests: list[str] = []
        self.builder: RequestBuilder | None = None

    def add(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        for step in steps(batch):
            self._add_step(step, task_index, first_row)
            first_row += step.num_rows

    def _add_step(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        rows = batch.num_rows
        prepared, changes = prepare_batch(self.checked, batch)
        verdict = self.validator.validate(prepared, rows)
        self.rows += rows
        for name, change in changes.items():
            self.normalized[name] = self.normalized.get(name, 0) + change.changed
            shown = self.changes.setdefault(name, [])
            for before, after in change.examples[: self.dry_run.show_changes - len(shown)]:
                shown.append([before, after])
        for failures in verdict.by_row():
            self.invalid += 1
            for issue in failures:
                self._count(issue, prepared, task_index, first_row)
            if self.dry_run.rejects is not None:
                _write_reject(self.dry_run.rejects, task_index, first_row, batch, failures)
        for issue in verdict.dropped:
            assert issue.column is not None
            self.dropped[issue.column] = self.dropped.get(issue.column, 0) + 1
        if task_index == 0 and len(self.requests) < self.dry_run.show_requests:
            self._sample_requests(verdict, first_row, rows)

    def _count(
        self, issue: Issue, prepared: Mapping[str, Prepared], task_index: int, first_row: int
    ) -> None:
        entry = self.rules.get(issue.reason)
        if entry is None:
            meaning = self.meanings.get(issue.column or "") or issue.message
            entry = self.rules[issue.reason] = {"count": 0, "meaning": meaning, "examples": []}
        entry["count"] += 1
        if len(entry["examples"]) < EXAMPLES_PER_RULE:
            column = prepared.get(issue.column or "")
            text = column.json[issue.row].as_py() if column is not None else None
            value = orjson.loads(text) if text is not None else None
            where = _where(task_index, first_row + issue.row)
            entry["examples"].append([where, value if value is not None else issue.message])

    def reject(self, records: list[FilterReject], task_index: int) -> None:
        """Records a filter set aside: invalid, in the table and the rejects like the rest."""
        for record in records:
            self.invalid += 1
            self.rows += 1
            entry = self.rules.setdefault(
                record.reason, {"count": 0, "meaning": record.message, "examples": []}
            )
            entry["count"] += 1
            if len(entry["examples"]) < EXAMPLES_PER_RULE:
                entry["examples"].append([_where(task_index, record.row), record.value])
            if self.dry_run.rejects is not None:
                self.dry_run.rejects.write(
                    task=task_index,
                    row=record.row,
                    stage="filter",
                    column=record.column,
                    rule=record.rule,
                    message=record.message,
                    record=record.record,
                )

    def _sample_requests(self, verdict: Verdict, first_row: int, rows: int) -> None:
        """The first request bodies of the first task, built as the run would build them."""
        if self.builder is None:
            self.builder = RequestBuilder(self.checked.task)
        plan = self.checked.plan
        texts = Encoder(layout(plan)).encode(verdict.prepared, rows)
        keys = (
            Encoder(identifier_group(plan)).encode(verdict.prepared, rows)
            if plan.operation is Operation.EVENTS
            else None
        )
        valid = verdict.valid
        row_numbers = np.arange(first_row, first_row + rows, dtype=np.int64)
        row_numbers = row_numbers[valid.to_numpy(zero_copy_only=False)]
        texts, keys = texts.filter(valid), keys.filter(valid) if keys is not None else None
        for request in self.builder.add(row_numbers, texts, keys):
            if len(self.requests) < self.dry_run.show_requests:
                self.requests.append(request.body.decode())

    def finish(self) -> dict[str, Any]:
        if self.builder is not None and len(self.requests) < self.dry_run.show_requests:
            request = self.builder.close()
            if request is not None:
                self.requests.append(request.body.decode())
        task = self.checked.task
        figures: dict[str, Any] = {
            "records_checked": self.rows,
            "invalid": self.invalid,
            # The host reads: the job as configured stops on an invalid record.
            "stops_on_invalid": not task.skip_invalid_records,
            "rules": self.rules,
        }
        normalized = {k: v for k, v in self.normalized.items() if v}
        if normalized:
            figures["normalized"] = normalized
        if self.dry_run.show_changes:
            figures["changes"] = {k: v for k, v in self.changes.items() if v}
        if self.dropped:
            figures["dropped_values"] = self.dropped
        if self.dry_run.show_requests:
            figures["requests"] = self.requests
        return figures


def _meaning(schema: Mapping[str, Any]) -> str | None:
    """The first ``description`` in a column's schema (its rules may sit in an allOf)."""
    if isinstance(schema.get("description"), str):
        description: str = schema["description"]
        return description
    for key in ("allOf", "anyOf"):
        for sub in schema.get(key, []):
            found = _meaning(sub)
            if found:
                return found
    return None


class InsiderPage(PageOutput):
    """One task: validate, encode and queue its rows; track which rows are settled.

    Locks: ``lock`` guards the builder (the task thread and the age ticker use it) and may be
    held while ``submit`` waits for an in-flight slot. Delivery workers never take it: their
    done-callbacks and reject callbacks take only the watermark's lock and ``recent_lock``,
    which nobody holds across a submit (see :mod:`watermark`).
    """

    def __init__(self, job: InsiderJob, task_index: int) -> None:
        self.job = job
        self.task = job.task
        self.plan = job.plan
        self.task_index = task_index
        self.validator = RecordValidator(self.plan, self.task, job.spec)
        self.builder = RequestBuilder(self.task)
        self.normalized: dict[str, int] = {}  # values changed, per column
        self.dropped: dict[str, int] = {}  # values left out (on_invalid_value: drop_value)
        self.tally = Tally()
        self.rows = 0  # rows received (the next row's position in the task)
        self.futures: list[Future[bool]] = []
        self.lock = threading.Lock()
        self.recent_lock = threading.Lock()
        self.watermark = Watermark(tracked=False)
        self._recent: dict[int, pa.RecordBatch] = {}  # chunk's first row -> its source rows
        self._progress: Callable[[int, int], None] | None = None
        with job.pages_lock:
            job.pages.add(self)

    def track(self, progress: Callable[[int, int], None]) -> None:
        self._progress = progress
        self.watermark.tracked = True

    def skip(self, rows: int) -> None:
        self.rows = rows
        self.watermark.skip(rows)

    def add(self, batch: pa.RecordBatch) -> None:
        for step in steps(batch):  # bounds the memory each step's intermediate columns take
            self._add_chunk(step)

    def _add_chunk(self, batch: pa.RecordBatch) -> None:
        self.job.delivery.raise_if_failed()
        first_row, rows = self.rows, batch.num_rows
        self.rows += rows
        with self.recent_lock:
            self._recent[first_row] = batch
        prepared, changes = prepare_batch(self.job.checked, batch)
        for name, change in changes.items():
            self.normalized[name] = self.normalized.get(name, 0) + change.changed
        valid = None
        if not self.job.prevalidated or self.task.drop_invalid_values:
            verdict = self.validator.validate(prepared, rows)
            prepared = dict(verdict.prepared)
            if verdict.dropped:
                self._write_dropped(batch, first_row, verdict.dropped)
            if verdict.issues:
                self._reject_invalid(batch, first_row, verdict.issues)
                valid = verdict.valid
        texts = self.job.encoder.encode(prepared, rows)
        keys = self.job.key_encoder.encode(prepared, rows) if self.job.key_encoder else None
        row_numbers = np.arange(first_row, first_row + rows, dtype=np.int64)
        if valid is not None:
            keep = valid.to_numpy(zero_copy_only=False)
            row_numbers, texts = row_numbers[keep], texts.filter(valid)
            keys = keys.filter(valid) if keys is not None else None
        self._queue(row_numbers, texts, keys, batch, first_row)

    def _queue(
        self,
        rows: np.ndarray,
        texts: pa.Array,
        keys: pa.Array | None,
        batch: pa.RecordBatch,
        first_row: int,
    ) -> None:
        oversize = self.builder.too_large(texts, keys)
        if oversize.any():
            for position in np.flatnonzero(oversize).tolist():
                size = len(texts[position].as_py())
                message = f"the record alone is {size:,} bytes of JSON; a request may be at most {self.task.max_bytes:,}"
                self._reject_invalid(
                    batch,
                    first_row,
                    [Issue(int(rows[position]) - first_row, None, "too_large", message)],
                )
            fits = pa.array(~oversize)
            rows, texts = rows[~oversize], texts.filter(fits)
            keys = keys.filter(fits) if keys is not None else None
        with self.lock:
            self._send(
                self.builder.add(rows, texts, keys), queued_through=first_row + batch.num_rows
            )
        self._report_progress()

    def _send(self, requests: list[Request], queued_through: int | None = None) -> None:
        """Record what the builder now holds, then hand closed requests to delivery (holding ``lock``)."""
        self.watermark.queued(
            ((id(request), request.rows) for request in requests),
            self.builder.first_pending_row(),
            queued_through,
        )
        for request in requests:
            key = id(request)
            future = self.job.delivery.submit(
                request,
                self.builder,
                self.tally,
                self._on_server_reject,
                on_start=lambda request=request: self._going_out(request),  # type: ignore[misc]
            )
            future.add_done_callback(lambda done, key=key: self._request_done(key, done))  # type: ignore[misc]
            self.futures.append(future)

    def _going_out(self, request: Request) -> None:
        """Recorded before it goes out: a crash from here on resends at most these rows."""
        if self._progress is None:
            return  # no resume state: nothing to record
        self.watermark.going_out(id(request), request.rows)
        self._report_progress()

    def _request_done(self, key: int, future: Future[bool]) -> None:
        if future.cancelled() or not future.result():
            return  # not settled: it stays below the watermark and a resume sends it again
        self.watermark.answered(key)
        self._report_progress()

    def _report_progress(self) -> None:
        """Report the watermark (rows below every unsettled request and pending record)."""
        position = self.watermark.position()
        settled, in_doubt = position.settled, position.in_doubt
        with self.recent_lock:
            for first_row in [r for r, b in self._recent.items() if r + b.num_rows <= settled]:
                del self._recent[first_row]
        try:
            # Rejections on disk before their rows count as settled anywhere.
            self.job.rejects.sync()
            if self._progress is not None:
                self._progress(settled, in_doubt)
        except ArrowbulkError as error:
            # A failed write of the reject file or the state stops the job; the task thread
            # raises it at its next step. Nothing here may escape: this runs in callbacks.
            self.job.delivery.fail(error)

    def flush_if_older_than(self, max_wait: float) -> None:
        with self.lock:
            oldest = self.builder.oldest()
            if oldest is None or time.monotonic() - oldest < max_wait:
                return
            request = self.builder.close()
            if request is not None:
                log.info(
                    "task %d: sending %d records that waited %.0fs",
                    self.task_index,
                    request.record_count,
                    max_wait,
                )
                self._send([request])

    def finish(self) -> None:
        """Send what the builder holds; the answers are awaited in ``commit``, so the thread
        that fed this task can feed the next one meanwhile."""
        with self.lock:
            request = self.builder.close()
            self._send([request] if request is not None else [])

    def _await_answers(self) -> int:
        """Wait for every answer; once the job is stopping, only until its deadline.

        Answers to requests already out still settle their rows. Returns how many requests
        were left unanswered.
        """
        pending = self.futures
        while pending:
            remaining = self.job.cancellation.remaining()
            _, left = wait(pending, timeout=0.25 if remaining is None else remaining)
            pending = list(left)
            if remaining is not None:
                return len(pending)
        return 0

    def commit(self) -> TaskReport:
        self._await_answers()
        self._report_progress()
        self.job.delivery.raise_if_failed()
        return self._report()

    def abort(self) -> TaskReport:
        # The host cancelled the job (with the reason) before calling abort: answers to
        # requests already out are awaited until the cancellation's deadline.
        late = self._await_answers()
        if late:
            log.warning(
                "task %d: %d request(s) still unanswered after exec.shutdown_timeout; their "
                "records are counted unsent",
                self.task_index,
                late,
            )
        self._report_progress()
        return self._report()

    def close(self) -> None:
        with self.job.pages_lock:
            self.job.pages.discard(self)

    def _report(self) -> TaskReport:
        with self.tally.lock:
            return TaskReport(
                accepted=self.tally.accepted,
                rejected=dict(self.tally.rejected),
                details={
                    "operation": self.task.operation.value,
                    "requests": self.tally.requests,
                    "records_sent": self.tally.records_sent,
                    "retries": self.tally.retries,
                    "split_requests": self.tally.splits,
                    "reject_file": str(self.task.reject_file) if self.job.rejects.count else None,
                    **_nonempty(
                        normalized={k: v for k, v in self.normalized.items() if v},
                        dropped_values=self.dropped,
                    ),
                },
            )

    def _reject_invalid(self, batch: pa.RecordBatch, first_row: int, issues: list[Issue]) -> None:
        groups = group_by_row(issues)
        for failures in groups:
            _write_reject(self.job.rejects, self.task_index, first_row, batch, failures)
            with self.tally.lock:
                self.tally.reject(failures[0].reason)
        self.job.reporter.acknowledge(len(groups))
        if not self.task.skip_invalid_records:
            issue = issues[0]
            raise RecordError(
                f"{_where(self.task_index, first_row + issue.row)}, column {issue.column or '-'}, rule {issue.rule}: "
                f"{issue.message}. Set skip_invalid_records: true to skip such records",
                reason=issue.reason,
            )

    def reject(self, records: list[FilterReject]) -> None:
        """Records a filter set aside: rejected like invalid records (stage ``filter``)."""
        for record in records:
            self.job.rejects.write(
                task=self.task_index,
                row=record.row,
                stage="filter",
                column=record.column,
                rule=record.rule,
                message=record.message,
                record=record.record,
            )
            with self.tally.lock:
                self.tally.reject(record.reason)
        self.job.reporter.acknowledge(len(records))
        if not self.task.skip_invalid_records:
            first = records[0]
            raise RecordError(
                f"{first.where}, {first.message}. Set skip_invalid_records: true to skip such "
                "records",
                reason=first.reason,
            )

    def _write_dropped(self, batch: pa.RecordBatch, first_row: int, dropped: list[Issue]) -> None:
        """Each value left out of a user that is sent: counted, and a line in the reject file."""
        for issue in dropped:
            assert issue.column is not None
            self.dropped[issue.column] = self.dropped.get(issue.column, 0) + 1
            self.job.rejects.write(
                task=self.task_index,
                row=first_row + issue.row,
                stage="value",
                column=issue.column,
                rule=issue.rule,
                message=f"{issue.message}; the user was sent without this value",
                record=batch.slice(issue.row, 1).to_pylist()[0],
            )

    def _on_server_reject(
        self, row: int, rule: str, message: str, user: bytes, attempt: int
    ) -> None:
        self.job.rejects.write(
            task=self.task_index,
            row=row,
            stage="server",
            rule=rule,
            message=message,
            record=self._source_row(row),
            sent=orjson.loads(user),
            attempt=attempt,
        )

    def _source_row(self, row: int) -> dict[str, Any] | None:
        with self.recent_lock:
            for first_row, batch in self._recent.items():
                if first_row <= row < first_row + batch.num_rows:
                    found: dict[str, Any] = batch.slice(row - first_row, 1).to_pylist()[0]
                    return found
        return None


def _write_reject(
    rejects: Any, task_index: int, first_row: int, batch: pa.RecordBatch, failures: list[Issue]
) -> None:
    """One invalid record: its first failure in the line's keys, every failure listed."""
    issue = failures[0]
    record = batch.slice(issue.row, 1).to_pylist()[0]
    rejects.write(
        task=task_index,
        row=first_row + issue.row,
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


def _nonempty(**figures: dict[str, int]) -> dict[str, dict[str, int]]:
    return {key: dict(value) for key, value in figures.items() if value}


def _where(task_index: int, row: int) -> str:
    return f"row {row}" + (f" of task {task_index}" if task_index else "")
