"""The insider output's record checks: every record before the first request, and the dry run.

:class:`InsiderRecordCheck` runs when ``skip_invalid_records`` is false: an invalid record stops
the job before anything is sent. :class:`InsiderDryRun` is ``arrowbulk validate``: every
record against every rule, the table of rules, normalization's changes, the request bodies.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from arrowbulk import DryRun, FilterReject, RecordCheck, RecordError
from arrowbulk.plugins.insider.batching import RequestBuilder
from arrowbulk.plugins.insider.encode import Encoder
from arrowbulk.plugins.insider.job import (
    Checked,
    encoders,
    prepare_batch,
    row_label,
    write_filter_reject,
    write_reject,
)
from arrowbulk.plugins.insider.prepare import Prepared
from arrowbulk.plugins.insider.steps import CHECK_ROWS, CHUNK_ROWS, Selected, steps
from arrowbulk.plugins.insider.validate import Issue, Verdict


class _ByStep(RecordCheck):
    """A check that takes batches in steps of ``step_rows`` (by default the pages' steps)."""

    step_rows = CHUNK_ROWS

    def add(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        for step in steps(batch, self.step_rows):
            self._add_step(step, task_index, first_row)
            first_row += step.num_rows

    @abstractmethod
    def _add_step(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None: ...


class InsiderRecordCheck(_ByStep):
    """Every record validated before the first request, so a bad last row sends nothing."""

    def __init__(self, checked: Checked) -> None:
        self.checked, self.job = checked, checked.job
        self.validator = checked.validator
        self.rows = 0
        # only_changed: users Insider holds as they are were valid when sent; not checked again.
        self.store = self.job.store if self.job is not None else None

    #: It makes no JSON texts: larger steps than the pages' (see steps.CHECK_ROWS).
    step_rows = CHECK_ROWS

    def add(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        if self.store is None:
            super().add(batch, task_index, first_row)
            return
        # only_changed: each step's hashes, remembered for the send pass too; the changed
        # users of the whole batch are then checked together.
        self.store.hash_ahead(task_index, first_row, batch)
        self.rows += batch.num_rows
        changed = Selected()
        for step in steps(batch):
            hashed = self.store.peek((task_index, first_row, step.num_rows))
            assert hashed is not None, "hash_ahead remembers every step"
            changed.add(step, _rows(first_row, step), hashed.changed)
            first_row += step.num_rows
        for step, positions in changed.steps():
            self._check(step, task_index, positions)

    def _add_step(self, batch: pa.RecordBatch, task_index: int, first_row: int) -> None:
        self.rows += batch.num_rows
        self._check(batch, task_index, _rows(first_row, batch))

    def _check(self, batch: pa.RecordBatch, task_index: int, positions: np.ndarray) -> None:
        prepared, _ = prepare_batch(self.checked, batch, check_only=True)
        verdict = self.validator.validate(prepared, batch.num_rows)
        if verdict.issues:
            failures = verdict.by_row()[0]
            issue = failures[0]
            if self.job is not None:
                write_reject(self.job.rejects, task_index, positions, batch, failures)
            raise RecordError(
                f"{row_label(task_index, int(positions[issue.row]))}, column {issue.column or '-'}, "
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


class InsiderDryRun(_ByStep):
    """``arrowbulk validate``: every record against every rule; what would be sent."""

    before_sending = False

    def __init__(self, checked: Checked, dry_run: DryRun) -> None:
        self.checked, self.dry_run = checked, dry_run
        self.validator = checked.validator
        self.meanings = {c.name: _meaning(c.schema) for c in checked.plan.columns}
        self.rows = 0
        self.invalid = 0
        self.rules: dict[str, dict[str, Any]] = {}
        self.normalized: dict[str, int] = {}
        self.changes: dict[str, list[list[Any]]] = {}
        self.dropped: dict[str, int] = {}
        self.requests: list[str] = []
        self.builder: RequestBuilder | None = None  # with the encoders, for --show-requests
        self.encoders: tuple[Encoder, Encoder | None] | None = None

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
                write_reject(
                    self.dry_run.rejects, task_index, _rows(first_row, batch), batch, failures
                )
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
            label = row_label(task_index, first_row + issue.row)
            entry["examples"].append([label, value if value is not None else issue.message])

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
                entry["examples"].append([row_label(task_index, record.row), record.value])
            if self.dry_run.rejects is not None:
                write_filter_reject(self.dry_run.rejects, task_index, record)

    def _sample_requests(self, verdict: Verdict, first_row: int, rows: int) -> None:
        """The first request bodies of the first task, built as the run would build them."""
        if self.builder is None:
            self.builder = RequestBuilder(self.checked.task)
            self.encoders = encoders(self.checked.plan)
        assert self.encoders is not None
        encoder, key_encoder = self.encoders
        texts = encoder.encode(verdict.prepared, rows)
        keys = key_encoder.encode(verdict.prepared, rows) if key_encoder is not None else None
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


def _rows(first_row: int, batch: pa.RecordBatch) -> np.ndarray:
    return np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)


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
