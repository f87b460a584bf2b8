"""An input seen through its filters: what preview, validate, the spool and the tasks read.

Filters map the schema once, when the job starts, and every batch as it is read, in the order
the config lists them. A batch a filter returns must have the schema it announced; a value it
cannot take (:class:`FilterValueError`) stops the job naming the task, the row and the column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from arrowbulk.errors import JobError
from arrowbulk.spi import FilterPlugin, FilterValueError, InputPlugin


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
        schemas = self._chain()
        first_row = 0
        for batch in self.inner.read(task_index):
            rows = batch.num_rows
            for plugin, expected in zip(self.filters, schemas[1:], strict=True):
                try:
                    batch = plugin.filter(batch)
                except FilterValueError as error:
                    raise JobError(
                        f"{self.describe_task(task_index)}, row {first_row + error.position}, "
                        f"filter {plugin.type_name}: {error}"
                    ) from None
                if not batch.schema.equals(expected):
                    raise JobError(
                        f"filter {plugin.type_name} returned columns {batch.schema} but announced "
                        f"{expected}; a bug in the filter plugin"
                    )
            first_row += rows
            yield batch
