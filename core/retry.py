"""``arrowbulk retry REJECTS --config JOB.yml``: send rejected records again.

After the cause is fixed (the data in the reject file's ``record`` fields, or the tenant's
settings), the records go through the job's own output again, with the same validation and
the same accounting. Their types are restored from the job's input schema. Rows of the retry
are numbered by their position among the reject file's records, and what is rejected again
goes to a new reject file beside the old one (``<name>.retry-<run id>.jsonl``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from arrowbulk import InputPlugin, RunContext
from arrowbulk.errors import ConfigError

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000


def read_rejects(path: Path, runs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The ``record`` of every line of a reject file written by ``runs``.

    A file that holds several runs (a fixed ``reject_file`` name kept across runs) must be
    given the runs to retry: records of different runs are never mixed silently. ``runs``
    ``["all"]`` takes every run. Of a record rejected by several runs (a resume rejects again
    what a crash left above its watermark), the last line is taken. A last line without its
    newline was torn by a crash while it was written: it is skipped with a warning (its record
    was not settled, so the resumed job rejects or sends it again).
    """
    try:
        # Split on "\n" only: JSON text may hold U+2028 and friends, which splitlines() breaks on.
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    lines = text.split("\n")
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            if number == len(lines):  # no newline after it: torn mid-write
                log.warning(
                    "%s, line %d: the last line is incomplete (the run that wrote it stopped "
                    "mid-write); skipped: its record was not settled, --resume handles it",
                    path,
                    number,
                )
                continue
            raise ConfigError(
                f"{path}, line {number}: not JSON; is this an arrowbulk reject file?"
            ) from None
        if isinstance(entry, dict) and isinstance(entry.get("record"), dict):
            entries.append(entry)
    return [e["record"] for e in _of_runs(entries, runs, path)]


def _of_runs(
    entries: list[dict[str, Any]], runs: Sequence[str] | None, path: Path
) -> list[dict[str, Any]]:
    found = Counter(str(e.get("run_id")) for e in entries)
    if runs and "all" not in runs:
        unknown = sorted(set(runs) - set(found))
        if unknown:
            raise ConfigError(
                f"--run {', '.join(unknown)}: not in {path} (it holds {_listing(found)})"
            )
        entries = [e for e in entries if str(e.get("run_id")) in runs]
    elif len(found) > 1 and not runs:
        raise ConfigError(
            f"{path} holds the rejects of {len(found)} runs ({_listing(found)}); choose with "
            "--run RUN_ID (repeatable), or --run all"
        )
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for entry in entries:
        latest.pop((entry.get("task"), entry.get("row")), None)
        latest[(entry.get("task"), entry.get("row"))] = entry  # the last rejection wins
    return list(latest.values())


def _listing(found: Counter[str]) -> str:
    return ", ".join(f"{run}: {count} record(s)" for run, count in found.items())


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

    def load(self, schema: pa.Schema, runs: Sequence[str] | None = None) -> int:
        """Read the records of ``runs``, typed like ``schema``; return how many there are."""
        self.table = typed_table(read_rejects(Path(self.config["path"]), runs), schema)
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
