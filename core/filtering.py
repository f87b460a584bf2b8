"""An input seen through its filters: what preview, validate, the spool and the tasks read.

Filters map the schema once, when the job starts, and every batch as it is read, in the order
the config lists them. A batch a filter returns must have the schema it announced. A value it
cannot take either stops the job naming the task, the row and the column
(:class:`FilterValueError`), or, from a filter that sets such rows aside (``filter_rows``),
becomes a :class:`FilterReject` handed to whoever reads the task: the output's page or
record check, which rejects it or stops the job. No row is lost between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from arrowbulk.errors import JobError
from arrowbulk.rejects import source_record
from arrowbulk.spi import FilterPlugin, FilterReject, FilterValueError, InputPlugin, SetAside

#: Receives the records filters set aside from one batch, with how many rows were kept before
#: them in the task (the position the next kept row has in what the output receives).
OnReject = Callable[[list[FilterReject], int], None]


class FilteredInput(InputPlugin):
    """``inner``'s tasks, each batch passed through ``filters`` in order."""

    type_name = "filtered"

    def __init__(self, inner: InputPlugin, filters: list[FilterPlugin]) -> None:
        super().__init__(inner.config, inner.context)
        self.inner = inner
        self.filters = filters
        self.replayable = inner.replayable  # type: ignore[misc]
        self._schemas: list[pa.Schema] | None = None

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def _chain(self) -> list[pa.Schema]:
        """The schema after each filter (the first is the input's)."""
        if self._schemas is None:
            schemas = [self.inner.schema()]
            for plugin in self.filters:
                schemas.append(plugin.transform_schema(schemas[-1]))
            self._schemas = schemas
        return self._schemas

    def schema(self) -> pa.Schema:
        return self._chain()[-1]

    def task_count(self) -> int:
        return self.inner.task_count()

    def describe_task(self, task_index: int) -> str:
        return self.inner.describe_task(task_index)

    def row_count(self) -> int | None:
        return self.inner.row_count()

    def fingerprint(self) -> dict[str, Any] | None:
        inner = self.inner.fingerprint()
        if inner is None:
            return None
        return {**inner, "filters": [dict(f.config) for f in self.filters]}

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        """The filtered batches; a row a filter sets aside stops the job (no one to take it)."""

        def stop(records: list[FilterReject], kept_before: int) -> None:
            raise JobError(f"{records[0].where}, {records[0].message}")

        return self.read_rows(task_index, stop)

    def read_rows(self, task_index: int, on_reject: OnReject) -> Iterator[pa.RecordBatch]:
        """The filtered batches of one task; rows set aside go to ``on_reject`` first."""
        schemas = self._chain()
        first_row = 0  # rows of the task's input before this batch
        kept = 0  # rows of the task yielded before this batch
        for raw in self.inner.read(task_index):
            batch = raw
            origin: np.ndarray | None = None  # raw row of each row still in `batch`
            rejects: list[FilterReject] = []
            for plugin, expected in zip(self.filters, schemas[1:], strict=True):
                given = batch
                try:
                    batch, aside = plugin.filter_rows(batch)
                except FilterValueError as error:
                    at = error.position if origin is None else int(origin[error.position])
                    raise JobError(
                        f"{self._where(task_index, first_row, at)}, "
                        f"filter {plugin.type_name}: {error}"
                    ) from None
                if not batch.schema.equals(expected):
                    raise JobError(
                        f"filter {plugin.type_name} returned columns {batch.schema} but announced "
                        f"{expected}; a bug in the filter plugin"
                    )
                if aside:
                    if origin is None:
                        origin = np.arange(given.num_rows)  # no row dropped yet: the identity
                    rejects += self._rejects(
                        plugin, aside, origin, raw, given, task_index, first_row
                    )
                    origin = np.delete(origin, [item.position for item in aside])
                elif batch.num_rows != given.num_rows:  # rows dropped (e.g. a WHERE): untraceable
                    origin = _lost(batch)
            if rejects:
                rejects.sort(key=lambda r: r.row)
                on_reject(rejects, kept)
            first_row += raw.num_rows
            kept += batch.num_rows
            yield batch

    def _rejects(
        self,
        plugin: FilterPlugin,
        aside: list[SetAside],
        origin: np.ndarray,
        raw: pa.RecordBatch,
        given: pa.RecordBatch,
        task_index: int,
        first_row: int,
    ) -> list[FilterReject]:
        """The rows ``plugin`` set aside, as the output's reject path takes them: each with
        its input row and the row as the input read it (as the filter got it, when untraceable)."""
        rejects = []
        for item in aside:
            at = int(origin[item.position])
            record = raw.slice(at, 1) if at >= 0 else given.slice(item.position, 1)
            rejects.append(
                FilterReject(
                    row=first_row + at if at >= 0 else -1,
                    column=item.column,
                    value=item.value,
                    rule=item.rule,
                    message=f"filter {plugin.type_name}, column {item.column}: "
                    f"{item.value!r} {item.problem}",
                    record=source_record(record, 0),
                    where=self._where(task_index, first_row, at),
                )
            )
        return rejects

    def _where(self, task_index: int, first_row: int, at: int) -> str:
        """Where a row is, for messages; ``at`` -1: an earlier filter dropped rows, so its
        input row is not known (never guessed)."""
        row = f"row {first_row + at}" if at >= 0 else "a row (its input row is unknown)"
        return f"{self.describe_task(task_index)}, {row}"


def _lost(batch: pa.RecordBatch) -> np.ndarray:
    """Input rows of a batch whose rows no longer map to the input's: unknown (-1)."""
    return np.full(batch.num_rows, -1, dtype=np.int64)
