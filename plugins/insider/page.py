"""One task of the insider output: validate, encode and queue its rows; account for each."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from arrowbulk import (
    ArrowbulkError,
    FilterReject,
    PageOutput,
    RecordError,
    TaskReport,
    source_record,
)
from arrowbulk.plugins.insider.batching import Request, RequestBuilder
from arrowbulk.plugins.insider.delivery import Tally
from arrowbulk.plugins.insider.fingerprints import TaskChanges
from arrowbulk.plugins.insider.job import (
    InsiderJob,
    earlier_attempt,
    nonempty,
    prepare_batch,
    row_label,
    write_filter_reject,
    write_reject,
)
from arrowbulk.plugins.insider.steps import Selected, steps
from arrowbulk.plugins.insider.validate import Issue, group_by_row
from arrowbulk.plugins.insider.watermark import Watermark

log = logging.getLogger(__name__)


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
        self.validator = job.checked.validator
        self.builder = RequestBuilder(self.task)
        self.normalized: dict[str, int] = {}  # values changed, per column
        self.dropped: dict[str, int] = {}  # values left out (on_invalid_value: drop_value)
        self.tally = Tally()
        self.rows = 0  # rows received (the next row's position in the task)
        self.futures: list[Future[bool]] = []
        self.lock = threading.Lock()
        self.recent_lock = threading.Lock()
        self.watermark = Watermark(tracked=False)
        self.changes = TaskChanges(job.store) if job.store is not None else None
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
        base = self.job.resumed_rows
        if self.job.remote and rows > base:
            # Settled by an attempt on a worker that died, in this run: its account is ours
            # (rows below base are an earlier run's, as for any resume).
            rejected = earlier_attempt(self.job.rejects.path, rows, base)
            with self.tally.lock:
                for reason, count in rejected.items():
                    self.tally.reject(reason, count)
                self.tally.accepted += rows - base - sum(rejected.values())

    def add(self, batch: pa.RecordBatch) -> None:
        self.job.delivery.raise_if_failed()
        if self.changes is not None:
            self._add_changed(batch)
            return
        for source in steps(batch):  # bounds the memory each step's intermediate columns take
            first_row = self._received(source)
            positions = np.arange(first_row, self.rows, dtype=np.int64)
            self._work(source, positions, queued_through=self.rows)

    def _received(self, source: pa.RecordBatch) -> int:
        """Take a step's rows into the task (kept until settled, for server rejects)."""
        first_row = self.rows
        self.rows += source.num_rows
        with self.recent_lock:
            self._recent[first_row] = source
        return first_row

    def _add_changed(self, batch: pa.RecordBatch) -> None:
        """only_changed: the users that changed in the whole batch, worked on in steps of
        their own (a few changed users per step would each pay a step's fixed costs)."""
        assert self.changes is not None
        self.changes.store.hash_ahead(self.task_index, self.rows, batch)  # unless checked
        changed_rows = Selected()
        for source in steps(batch):
            first_row = self._received(source)
            positions = np.arange(first_row, self.rows, dtype=np.int64)
            chunk = (self.task_index, first_row, source.num_rows)
            changed = self.changes.select(source, positions, chunk)
            if not changed.all():
                # Insider holds these users as they are: settled, nothing to prepare or send.
                self.job.reporter.acknowledge(int(len(changed) - changed.sum()))
            changed_rows.add(source, positions, changed)
        if not changed_rows:  # every user unchanged: the rows are settled
            with self.lock:
                self._send([], queued_through=self.rows)
            self._report_progress()
            return
        work = list(changed_rows.steps())
        for number, (step, positions) in enumerate(work):
            # Rows below the next step's first changed row are queued or settled.
            following = work[number + 1][1][0] if number + 1 < len(work) else self.rows
            self._work(step, positions, queued_through=int(following))

    def _work(self, batch: pa.RecordBatch, positions: np.ndarray, queued_through: int) -> None:
        """Normalize, prepare, validate, encode and queue ``batch`` (``positions``: each of
        its rows' place in the task); rows below ``queued_through`` are then all handled."""
        rows = batch.num_rows
        prepared, changes = prepare_batch(self.job.checked, batch)
        for name, change in changes.items():
            self.normalized[name] = self.normalized.get(name, 0) + change.changed
        valid = None
        if not self.job.prevalidated or self.task.drop_invalid_values:
            verdict = self.validator.validate(prepared, rows)
            prepared = dict(verdict.prepared)
            if verdict.dropped:
                self._write_dropped(batch, positions, verdict.dropped)
            if verdict.issues:
                self._reject_invalid(batch, positions, verdict.issues)
                valid = verdict.valid
        texts = self.job.encoder.encode(prepared, rows)
        keys = self.job.key_encoder.encode(prepared, rows) if self.job.key_encoder else None
        row_numbers = positions
        if valid is not None:
            row_numbers, texts = (
                positions[valid.to_numpy(zero_copy_only=False)],
                texts.filter(valid),
            )
            keys = keys.filter(valid) if keys is not None else None
        self._queue(row_numbers, texts, keys, batch, positions, queued_through)

    def _queue(
        self,
        rows: np.ndarray,
        texts: pa.Array,
        keys: pa.Array | None,
        batch: pa.RecordBatch,
        positions: np.ndarray,
        queued_through: int,
    ) -> None:
        """Hand the encoded records of ``rows`` to the builder; rows below ``queued_through``
        are then all queued, sent or settled (``positions``: each ``batch`` row's row)."""
        oversize = self.builder.too_large(texts, keys)
        if oversize.any():
            for position in np.flatnonzero(oversize).tolist():
                size = len(texts[position].as_py())
                message = f"the record alone is {size:,} bytes of JSON; a request may be at most {self.task.max_bytes:,}"
                at = int(np.searchsorted(positions, rows[position]))
                self._reject_invalid(batch, positions, [Issue(at, None, "too_large", message)])
            fits = pa.array(~oversize)
            rows, texts = rows[~oversize], texts.filter(fits)
            keys = keys.filter(fits) if keys is not None else None
        with self.lock:
            self._send(self.builder.add(rows, texts, keys), queued_through=queued_through)
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
            if self.changes is not None:
                self.changes.sent(key, request.rows)
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
        if self.changes is not None:
            self.changes.answered(key)
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
        self._hand_over_fingerprints()
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
        self._hand_over_fingerprints()  # users Insider took before the failure need not go again
        return self._report()

    def close(self) -> None:
        with self.job.pages_lock:
            self.job.pages.discard(self)
        if self.job.remote:
            self.job.close()  # the task's own job (open_remote)

    def _hand_over_fingerprints(self) -> None:
        """only_changed: the fingerprints of the users Insider acknowledged, to the store."""
        if self.changes is not None:
            self.changes.close()

    def _report(self) -> TaskReport:
        unchanged = self.changes.unchanged if self.changes is not None else 0
        with self.tally.lock:
            return TaskReport(
                # Users Insider already holds as they are count as accepted, and are counted.
                accepted=self.tally.accepted + unchanged,
                rejected=dict(self.tally.rejected),
                details={
                    "operation": self.task.operation.value,
                    "requests": self.tally.requests,
                    "records_sent": self.tally.records_sent,
                    "retries": self.tally.retries,
                    "split_requests": self.tally.splits,
                    "reject_file": str(self.task.reject_file) if self.job.rejects.count else None,
                    **nonempty(
                        normalized={k: v for k, v in self.normalized.items() if v},
                        dropped_values=self.dropped,
                    ),
                    **({"unchanged": unchanged} if self.changes is not None else {}),
                },
            )

    def _reject_invalid(
        self, batch: pa.RecordBatch, positions: np.ndarray, issues: list[Issue]
    ) -> None:
        groups = group_by_row(issues)
        for failures in groups:
            write_reject(self.job.rejects, self.task_index, positions, batch, failures)
            with self.tally.lock:
                self.tally.reject(failures[0].reason)
        self.job.reporter.acknowledge(len(groups))
        if not self.task.skip_invalid_records:
            issue = issues[0]
            raise RecordError(
                f"{row_label(self.task_index, int(positions[issue.row]))}, column {issue.column or '-'}, rule {issue.rule}: "
                f"{issue.message}. Set skip_invalid_records: true to skip such records",
                reason=issue.reason,
            )

    def reject(self, records: list[FilterReject]) -> None:
        """Records a filter set aside: rejected like invalid records (stage ``filter``)."""
        for record in records:
            write_filter_reject(self.job.rejects, self.task_index, record)
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

    def _write_dropped(
        self, batch: pa.RecordBatch, positions: np.ndarray, dropped: list[Issue]
    ) -> None:
        """Each value left out of a user that is sent: counted, and a line in the reject file."""
        for issue in dropped:
            assert issue.column is not None
            self.dropped[issue.column] = self.dropped.get(issue.column, 0) + 1
            self.job.rejects.write(
                task=self.task_index,
                row=int(positions[issue.row]),
                stage="value",
                column=issue.column,
                rule=issue.rule,
                message=f"{issue.message}; the user was sent without this value",
                record=source_record(batch, issue.row),
            )

    def _on_server_reject(
        self, row: int, rule: str, message: str, user: bytes, attempt: int
    ) -> None:
        if self.changes is not None:
            self.changes.refused(row)
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
                    return source_record(batch, row - first_row)
        return None
