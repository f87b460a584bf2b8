"""``arrowbulk retry REJECTS --config JOB.yml``: send rejected records again.

After the cause is fixed (the data in the reject file's ``record`` fields, or the tenant's
settings), the records go through the job's own output again, with the same validation and
the same accounting. Their types are restored from the job's input schema. Rows of the retry
are numbered by their position among the reject file's records, and what is rejected again
goes to a new reject file beside the old one (``<name>.retry-<run id>.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from arrowbulk import InputPlugin, RunContext, hookimpl
from arrowbulk.errors import ConfigError

BATCH_ROWS = 10_000


def read_rejects(path: Path) -> list[dict[str, Any]]:
    """The ``record`` of every line of a reject file."""
    records = []
    try:
        # Split on "\n" only: JSON text may hold U+2028 and friends, which splitlines() breaks on.
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ConfigError(
                f"{path}, line {number}: not JSON; is this an arrowbulk reject file?"
            ) from None
        if isinstance(entry, dict) and isinstance(entry.get("record"), dict):
            records.append(entry["record"])
    return records


def typed_table(records: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """The records as a table of the input's schema (JSON lost the types: timestamps, dates)."""
    return pa.table(
        [_column([r.get(f.name) for r in records], f.type) for f in schema], schema=schema
    )


def _column(values: list[Any], target: pa.DataType) -> pa.Array:
    if all(v is None for v in values):
        return pa.nulls(len(values), target)
    array = pa.array(values)
    if array.type == target:
        return array
    if pat.is_timestamp(target) and pat.is_string(array.type):
        zoned = array.cast(pa.timestamp(target.unit, "UTC"))  # JSON wrote them with an offset
        return zoned if target.tz else zoned.cast(pa.int64()).cast(pa.timestamp(target.unit))
    return array.cast(target)


class RejectsInput(InputPlugin):
    """Reads the records of a reject file, typed like the job's input. Used by ``retry``."""

    type_name = "arrowbulk-rejects"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}

    def __init__(self, config: Mapping[str, Any], context: RunContext) -> None:
        super().__init__(config, context)
        self.table: pa.Table | None = None

    def load(self, schema: pa.Schema) -> int:
        """Read the records, typed like ``schema``; return how many there are."""
        self.table = typed_table(read_rejects(Path(self.config["path"])), schema)
        return int(self.table.num_rows)

    def schema(self) -> pa.Schema:
        assert self.table is not None
        return self.table.schema

    def task_count(self) -> int:
        return 1

    def read(self, task_index: int) -> Iterator[pa.RecordBatch]:
        assert self.table is not None
        yield from self.table.to_batches(max_chunksize=BATCH_ROWS)

    def fingerprint(self) -> dict[str, Any]:
        path = Path(self.config["path"])
        return {"rejects": [str(path), path.stat().st_size, path.stat().st_mtime_ns]}


class RetryPlugins:
    @hookimpl
    def register_input_plugins(self, register: Any) -> None:
        register(RejectsInput)
