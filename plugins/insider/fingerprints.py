"""``only_changed``: send a user only when the object sent differs from the last one Insider
acknowledged.

Per user: a 64-bit hash of its identifier columns (the key) and one of the other columns the
output receives (the fingerprint; together they hash the whole object sent), computed by DuckDB over each Arrow chunk before any other work, so
an unchanged user costs a hash and a lookup, not normalization, validation and encoding. The
object sent is a function of those values and of the settings in the store's scope (partner,
endpoint, operation, normalization, the columns, and the arrowbulk and DuckDB versions: an
upgrade sends everyone once, never hides a change; another scope starts empty, and says so).
The store is a Parquet base of (key, fingerprint, identifier columns) sorted by key, plus small
delta files, read once per job into two numpy arrays; each chunk's lookup probes buckets of
keys. Fingerprints are written only for users the API acknowledged (never for a rejected or
unanswered one), at the end of the job, whether it succeeded or not; a crash (nothing
written) makes the next run send again, so no change can be hidden.

Users in the store that a complete run (not incremental, not resumed, successful) did not see
are *removed*: counted, written to ``removed_file`` (their identifiers, one JSON object per
line, for a follow-up DELETE job) and dropped from the store. Nothing is deleted implicitly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from arrowbulk import JobError, __version__, write_atomically
from arrowbulk.plugins.insider.columns import Plan
from arrowbulk.plugins.insider.config import InsiderTask
from arrowbulk.plugins.insider.steps import steps

_SCOPE_KEY = b"arrowbulk.scope"


class RowHasher:
    """64-bit hashes of rows of Arrow columns, by DuckDB (one connection per task thread)."""

    def __init__(self) -> None:
        import duckdb

        self.connection = duckdb.connect()
        self.connection.execute("SET threads = 1")  # the task's own thread does the work
        self.connection.execute("SET preserve_insertion_order = true")

    def hash(self, batch: pa.RecordBatch, groups: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
        """For each group of columns, a hash per row (rows in the batch's order)."""
        self.connection.register("arrowbulk_rows", pa.Table.from_batches([batch]))
        try:
            selects = ", ".join(
                f"hash({', '.join(_quoted(c) for c in columns)}) AS {_quoted(name)}"
                for name, columns in groups.items()
            )
            result = self.connection.sql(f"SELECT {selects} FROM arrowbulk_rows").to_arrow_table()
        finally:
            self.connection.unregister("arrowbulk_rows")
        return {name: result.column(name).to_numpy() for name in groups}

    def close(self) -> None:
        self.connection.close()


def member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Per value: is it in ``of``? (A sort and a binary search: np.isin took 1.7 s on 2M.)"""
    if not len(of):
        return np.zeros(len(values), dtype=bool)
    ordered = np.sort(of)
    position = np.searchsorted(ordered, values)
    position[position >= len(ordered)] = 0
    found: np.ndarray = ordered[position] == values
    return found


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: A run that changed few users writes its fingerprints as a small delta file beside the
#: base instead of rewriting the whole store (a 2M-user rewrite took ~1.4 s); deltas are
#: merged into the base when there are this many, or when they hold this share of its users.
MAX_DELTAS = 8
MAX_DELTA_SHARE = 0.1

_GENERATION_KEY = b"arrowbulk.generation"

#: Keys are bucketed by their top bits for lookups (2**20 buckets: 8 MB; ~2 keys each at 2M).
_BUCKET_BITS = 20
_MAX_BUCKET = 64


@dataclass(frozen=True)
class Hashed:
    keys: np.ndarray  # every row's key
    changed: np.ndarray  # per row: does the user differ from what Insider holds?
    values: np.ndarray  # the fingerprints of the changed rows


class FingerprintStore:
    """The base file (sorted by key) plus the deltas of its generation, merged in memory.

    A delta belongs to one generation of the base: when the base is rewritten (merging the
    deltas in) its generation goes up, so a delta left behind by a crash between the two
    steps is ignored rather than read over newer fingerprints.
    """

    def __init__(
        self,
        path: Path,
        scope: Mapping[str, Any],
        full: bool,
        identifiers: list[str] | None = None,
        columns: list[str] | None = None,
    ) -> None:
        self.path, self.scope = path, dict(scope)
        # What a row's key and fingerprint hash: its identifier columns, and the others (the
        # lookup is by key, so identifiers are hashed once; with none other, the key is all).
        self.identifiers = identifiers or []
        self.others = [c for c in columns or [] if c not in self.identifiers]
        self.note: str | None = None
        self.keys = np.zeros(0, np.uint64)
        self.values = np.zeros(0, np.uint64)
        self.generation = 0
        self.base_rows = 0
        self.deltas: list[Path] = []
        self.delta_rows = 0
        self._loaded = False
        self._lock = threading.Lock()
        self._seen = np.zeros(0, dtype=bool)  # per stored user: in this run's input?
        self._acknowledged: list[pa.Table] = []
        self._local = threading.local()  # one DuckDB connection per thread, for all its tasks
        self._chunks: dict[tuple[int, int, int], Hashed] = {}
        self._index: tuple[np.ndarray, int] | None = None  # buckets of keys, built once
        self._hashers: list[RowHasher] = []
        if full:
            self.note = "--full: every user sent; the store is rewritten from this run"
        elif path.exists():
            self._load()
        else:
            self.note = f"{path.name} does not exist yet: every user is sent this time"

    def _load(self) -> None:
        try:
            stored = pq.read_table(self.path, columns=["key", "value"])
            metadata = pq.read_schema(self.path).metadata or {}
        except (OSError, pa.ArrowInvalid, KeyError) as error:
            raise JobError(
                f"out.fingerprint_file: {self.path} cannot be read ({error}); delete it (the "
                "next run sends every user and writes a new one) or run with --full"
            ) from None
        scope = orjson.loads(metadata.get(_SCOPE_KEY, b"{}"))
        if scope != self.scope:
            self.note = (
                f"{self.path.name} was written for another scope ({_describe(scope)}); this "
                f"job ({_describe(self.scope)}) starts with an empty store: every user is sent"
            )
            return
        self.generation = int(metadata.get(_GENERATION_KEY, b"0"))
        self.base_rows = stored.num_rows
        keys, values = [stored.column("key").to_numpy()], [stored.column("value").to_numpy()]
        self.deltas = self._delta_paths(self.generation)
        for delta in self.deltas:
            table = pq.read_table(delta, columns=["key", "value"])
            keys.append(table.column("key").to_numpy())
            values.append(table.column("value").to_numpy())
            self.delta_rows += table.num_rows
        if len(keys) == 1:  # the base alone: written sorted, one row per key
            self.keys, self.values = keys[0], values[0]
        else:
            self.keys, self.values = _newest(np.concatenate(keys), np.concatenate(values))
        self._seen = np.zeros(len(self.keys), dtype=bool)
        self._loaded = True

    def _delta_paths(self, generation: int) -> list[Path]:
        prefix = f"{self.path.name}.g{generation}.delta-"
        found = self.path.parent.glob(f"{prefix}*.parquet")
        return sorted(found, key=lambda p: int(p.name[len(prefix) : -len(".parquet")]))

    def unchanged(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per user: is the object the same as the one Insider last acknowledged?"""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool)
        starts, widest = self._buckets()
        if widest > _MAX_BUCKET:  # keys far from uniform: a binary search instead
            return self._unchanged_by_search(keys, values)
        # Keys are hashes, uniform: their top bits name a bucket of a few sorted keys; a
        # vectorized walk through the buckets, step by step for the rows not found yet, finds
        # each key (a third of a binary search's time on 2M keys).
        bucket = (keys >> np.uint64(64 - _BUCKET_BITS)).astype(np.intp)
        position, end = starts[bucket], starts[bucket + 1]
        found = np.full(len(keys), -1, dtype=np.intp)
        active = np.flatnonzero(position < end)  # the rows still looking, each one step on
        while len(active):
            at = position[active]
            hit = self.keys[at] == keys[active]
            found[active[hit]] = at[hit]
            position[active] = at + 1
            active = active[~hit & (at + 1 < end[active])]
        self._mark_seen(found)
        known = found >= 0
        same: np.ndarray = known & (self.values[np.where(known, found, 0)] == values)
        return same

    def _unchanged_by_search(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        # Searching in key order is twice as fast: the lookups walk the store once.
        order = np.argsort(keys)
        position = np.empty(len(keys), dtype=np.intp)
        position[order] = np.searchsorted(self.keys, keys[order])
        inside = position < len(self.keys)
        position[~inside] = 0
        known = inside & (self.keys[position] == keys)
        self._mark_seen(np.where(known, position, -1))
        same: np.ndarray = known & (self.values[position] == values)
        return same

    def _mark_seen(self, found: np.ndarray) -> None:
        """The stored users this run's input holds (``found``: store positions, -1 for new
        users): those not marked at the end of a complete run are the removed ones."""
        with self._lock:
            self._seen[found[found >= 0]] = True

    def _buckets(self) -> tuple[np.ndarray, int]:
        """Where each bucket of keys (by their top bits) starts, and the widest bucket."""
        with self._lock:
            if self._index is None:
                edges = np.arange(2**_BUCKET_BITS, dtype=np.uint64) << np.uint64(64 - _BUCKET_BITS)
                starts = np.append(np.searchsorted(self.keys, edges), len(self.keys))
                starts = starts.astype(np.intp)
                self._index = (starts, int(np.diff(starts).max()))
            return self._index

    def remember(self, chunk: tuple[int, int, int], hashed: Hashed) -> None:
        """A chunk's hashes (task, first row, rows), made ahead by :meth:`hash_ahead`: the
        page takes them, and after the check before sending, the send pass does (it reads the
        same rows: the replayable contract, on which skipping the second validation already
        relies) instead of hashing again."""
        with self._lock:
            self._chunks[chunk] = hashed

    def recall(self, chunk: tuple[int, int, int]) -> Hashed | None:
        with self._lock:
            return self._chunks.pop(chunk, None)

    def peek(self, chunk: tuple[int, int, int]) -> Hashed | None:
        """What ``remember`` holds for ``chunk``, left for the send pass to recall."""
        with self._lock:
            return self._chunks.get(chunk)

    def hash_ahead(self, task_index: int, first_row: int, batch: pa.RecordBatch) -> None:
        """Hash a whole input batch in one call (DuckDB's cost is mostly per call: steps of
        16k rows made day 2 of a 2M-user sync 15% slower) and remember each step's part,
        for the step's lookup; nothing to do if this batch's steps are remembered already."""
        sizes = [step.num_rows for step in steps(batch)]
        if not sizes or self.peek((task_index, first_row, sizes[0])) is not None:
            return
        keys, values = self._hash(batch)
        changed = ~self.unchanged(keys, values)
        start = 0
        for rows in sizes:
            part = slice(start, start + rows)
            moved = changed[part]
            chunk = (task_index, first_row + start, rows)
            self.remember(chunk, Hashed(keys[part], moved, values[part][moved]))
            start += rows

    def _hash(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        groups = {"key": self.identifiers} | ({"value": self.others} if self.others else {})
        hashes = self.hasher().hash(batch, groups)
        return hashes["key"], hashes.get("value", hashes["key"])

    def hasher(self) -> RowHasher:
        """This thread's row hasher (a DuckDB connection costs ~0.1 s: one per thread)."""
        hasher: RowHasher | None = getattr(self._local, "hasher", None)
        if hasher is None:
            hasher = self._local.hasher = RowHasher()
            with self._lock:
                self._hashers.append(hasher)
        return hasher

    def close(self) -> None:
        with self._lock:
            hashers, self._hashers = self._hashers, []
            self._chunks.clear()
        for hasher in hashers:
            hasher.close()

    def acknowledged(self, keys: np.ndarray, values: np.ndarray, identifiers: pa.Table) -> None:
        """Users Insider took: their key, fingerprint and identifier columns."""
        table = pa.Table.from_arrays(
            [pa.array(keys, pa.uint64()), pa.array(values, pa.uint64()), *identifiers.columns],
            names=["key", "value", *identifiers.column_names],
        )
        with self._lock:
            self._acknowledged.append(table)

    def write(self, complete: bool, removed_file: Path | None) -> dict[str, Any]:
        """Add what Insider acknowledged to the store; return the figures for the summary."""
        with self._lock:
            fresh = pa.concat_tables(self._acknowledged) if self._acknowledged else None
            gone = ~self._seen if complete and len(self.keys) else None
        written = fresh.num_rows if fresh is not None else 0
        figures: dict[str, Any] = {"fingerprints_written": written}
        figures["removed"] = int(gone.sum()) if gone is not None else 0
        if not written and not figures["removed"]:
            figures["fingerprints_stored"] = len(self.keys)
            return figures  # nothing new, nothing gone: the store stands as it is
        small = (
            self._loaded
            and not figures["removed"]
            and len(self.deltas) < MAX_DELTAS
            and self.delta_rows + written <= MAX_DELTA_SHARE * max(self.base_rows, 1)
        )
        if small and fresh is not None:
            self._save(_sorted_newest(fresh), self._next_delta(), self.generation)
            new_keys = np.unique(fresh.column("key").to_numpy())
            stored = len(self.keys) + int((~member(new_keys, self.keys)).sum())
            figures["fingerprints_stored"] = stored
            return figures
        merged = self._merged(fresh)
        if figures["removed"]:
            removed_keys = self.keys[gone]
            out = member(merged.column("key").to_numpy(), removed_keys)
            if removed_file is not None:
                _write_removed(
                    merged.filter(pa.array(out)).drop_columns(["key", "value"]), removed_file
                )
                figures["removed_file"] = str(removed_file)
            merged = merged.filter(pa.array(~out))
        generation = self._next_generation()
        self._save(merged, self.path, generation)
        for delta in self.path.parent.glob(f"{self.path.name}.g*.delta-*.parquet"):
            delta.unlink(missing_ok=True)  # older generations: ignored even if one is left
        figures["fingerprints_stored"] = merged.num_rows
        return figures

    def _next_generation(self) -> int:
        """Above every generation on disk, so no delta left behind can match the new base."""
        found = [self.generation]
        for delta in self.path.parent.glob(f"{self.path.name}.g*.delta-*.parquet"):
            number = delta.name[len(self.path.name) + 2 :].split(".", 1)[0]
            if number.isdigit():
                found.append(int(number))
        if self.path.exists():
            try:
                metadata = pq.read_schema(self.path).metadata or {}
                found.append(int(metadata.get(_GENERATION_KEY, b"0")))
            except (OSError, pa.ArrowInvalid, ValueError):
                pass  # an unreadable old base is replaced
        return max(found) + 1

    def _merged(self, fresh: pa.Table | None) -> pa.Table:
        """The base, its deltas and ``fresh``: one table, sorted, the newest per key."""
        parts = []
        if self._loaded:
            parts.append(pq.read_table(self.path))
            parts += [pq.read_table(delta) for delta in self.deltas]
        if fresh is not None and fresh.num_rows:
            parts.append(fresh)
        parts = [p.replace_schema_metadata(None) for p in parts]
        merged = pa.concat_tables([parts[0], *(p.cast(parts[0].schema) for p in parts[1:])])
        return _sorted_newest(merged)

    def _next_delta(self) -> Path:
        number = len(self._delta_paths(self.generation))
        return self.path.with_name(f"{self.path.name}.g{self.generation}.delta-{number}.parquet")

    def _save(self, table: pa.Table, path: Path, generation: int) -> None:
        metadata = {
            _SCOPE_KEY: orjson.dumps(self.scope),
            _GENERATION_KEY: str(generation).encode(),
        }
        # Hashes do not compress; identifiers do.
        compression = {c: "zstd" for c in table.column_names} | {"key": "none", "value": "none"}
        try:
            write_atomically(
                path,
                lambda temporary: pq.write_table(
                    table.replace_schema_metadata(metadata),
                    temporary,
                    compression=compression,
                    use_dictionary=False,
                    row_group_size=1 << 20,
                ),
            )
        except OSError as error:
            raise JobError(
                f"out.fingerprint_file: cannot write {path}: {error.strerror or error}; the "
                "users sent are at Insider, the next run sends them again"
            ) from None


def _newest_positions(keys: np.ndarray) -> np.ndarray:
    """Positions of each key's last occurrence, in key order (later files and rows win)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    last: np.ndarray = order[np.append(ordered[1:] != ordered[:-1], True)]
    return last


def _newest(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positions = _newest_positions(keys)
    return keys[positions], values[positions]


def _sorted_newest(table: pa.Table) -> pa.Table:
    return table.take(pa.array(_newest_positions(table.column("key").to_numpy())))


def _write_removed(identifiers: pa.Table, path: Path) -> None:
    """One identifiers object per line (the null ones left out), for a DELETE job's input."""
    lines = [
        orjson.dumps({k: v for k, v in row.items() if v is not None})
        for row in identifiers.to_pylist()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def _describe(scope: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "none"


def open_store(task: InsiderTask, plan: Plan, full: bool) -> FingerprintStore | None:
    """The job's store when ``only_changed`` is on. Its scope holds everything that decides the
    object sent besides the row's values (an upgrade of arrowbulk or DuckDB starts it afresh)."""
    if task.fingerprint_file is None:
        return None
    import duckdb  # its row hashes are the fingerprints

    scope = {
        "partner": task.partner_name,
        "endpoint": task.endpoint,
        "operation": task.operation.value,
        "columns": [f"{c.name}: {c.kind.value}" for c in plan.columns],
        "custom_identifiers": list(task.custom_identifiers),
        "normalize": repr(task.normalize),
        "drop_invalid_values": task.drop_invalid_values,
        "versions": f"arrowbulk {__version__}, duckdb {duckdb.__version__}",
    }
    return FingerprintStore(
        task.fingerprint_file,
        scope,
        full,
        [c.name for c in plan.identifiers],
        [c.name for c in plan.columns],
    )


class TaskChanges:
    """One task's part of ``only_changed``: which rows to send, and which Insider took."""

    def __init__(self, store: FingerprintStore) -> None:
        self.store = store
        self.unchanged = 0
        self._lock = threading.Lock()
        # rows that changed (to be sent), with their key, fingerprint and identifier columns
        self._rows: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._identities: list[pa.Table] = []
        self._requests: dict[int, np.ndarray] = {}  # request key -> its rows
        self._acknowledged: list[np.ndarray] = []
        self._refused: set[int] = set()  # rows the server refused
        self._closed = False

    def select(
        self, batch: pa.RecordBatch, rows: np.ndarray, chunk: tuple[int, int, int]
    ) -> np.ndarray:
        """Per row of a chunk (``rows``: their positions in the task): did the user change?"""
        hashed = self.store.recall(chunk)
        assert hashed is not None, "the page hashes each batch ahead of its steps"
        keys, changed = hashed.keys, hashed.changed
        mask = pa.array(changed)
        with self._lock:
            self.unchanged += int(len(changed) - changed.sum())
            self._rows.append(rows[changed])
            self._keys.append(keys[changed])
            self._values.append(hashed.values)
            self._identities.append(
                pa.Table.from_batches([batch.select(self.store.identifiers)]).filter(mask)
            )
        return changed

    def sent(self, request: int, rows: np.ndarray) -> None:
        with self._lock:
            self._requests[request] = rows

    def answered(self, request: int) -> None:
        with self._lock:
            rows = self._requests.pop(request, None)
            if rows is not None:
                self._acknowledged.append(rows)

    def refused(self, row: int) -> None:
        with self._lock:
            self._refused.add(row)

    def close(self) -> None:
        """Hand the store the fingerprints of the users Insider acknowledged (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._rows and self._acknowledged:
                rows = np.concatenate(self._rows)
                taken = np.concatenate(self._acknowledged)
                if self._refused:
                    taken = taken[~member(taken, np.fromiter(self._refused, np.int64))]
                mask = member(rows, taken)
                self.store.acknowledged(
                    np.concatenate(self._keys)[mask],
                    np.concatenate(self._values)[mask],
                    pa.concat_tables(self._identities).filter(pa.array(mask)),
                )
            self._rows.clear()
            self._acknowledged.clear()
