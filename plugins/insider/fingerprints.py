"""``only_changed``: send a user only when the object sent differs from the last one Insider
acknowledged.

Per user: a 64-bit xxh3 hash of its identifiers object (the key) and one of the exact user
object the run would send (the fingerprint). The store is a Parquet file of (key, fingerprint,
identifiers) sorted by key, read once per job into two numpy arrays; each chunk's lookup is a
vectorized binary search (no Python per row beyond the hashing). Fingerprints are written
only for users the API acknowledged (never for a rejected or unanswered one), at the end of
the job, whether it succeeded or not; a crash (nothing written) makes the next run send again,
so no change can be hidden. The store remembers its scope (partner, operation, the columns
sent): another scope starts empty, and says so.

Users in the store that a complete run (not incremental, not resumed, successful) did not see
are *removed*: counted, written to ``removed_file`` (their identifiers, one JSON object per
line, for a follow-up DELETE job) and dropped from the store. Nothing is deleted implicitly.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from arrowbulk import JobError

log = logging.getLogger(__name__)

_SCOPE_KEY = b"arrowbulk.scope"


def hashes(texts: pa.Array) -> np.ndarray:
    """A 64-bit xxh3 hash of each (binary or string) value."""
    digest = xxhash.xxh3_64_intdigest
    values = texts.to_pylist()
    return np.fromiter(
        (digest(v if isinstance(v, bytes) else v.encode()) for v in values),
        dtype=np.uint64,
        count=len(values),
    )


class FingerprintStore:
    def __init__(self, path: Path, scope: Mapping[str, Any], full: bool) -> None:
        self.path, self.scope = path, dict(scope)
        self.note: str | None = None
        self.keys = np.zeros(0, np.uint64)
        self.values = np.zeros(0, np.uint64)
        self._lock = threading.Lock()
        self._seen: list[np.ndarray] = []
        self._acknowledged: list[pa.Table] = []
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
        self.keys = stored.column("key").to_numpy()
        self.values = stored.column("value").to_numpy()

    @property
    def size(self) -> int:
        return len(self.keys)

    def unchanged(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per user: is the object the same as the one Insider last acknowledged?"""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=bool)
        position = np.searchsorted(self.keys, keys)
        inside = position < len(self.keys)
        position[~inside] = 0
        same: np.ndarray = (
            inside & (self.keys[position] == keys) & (self.values[position] == values)
        )
        return same

    def seen(self, keys: np.ndarray) -> None:
        with self._lock:
            self._seen.append(keys)

    def acknowledged(self, keys: np.ndarray, values: np.ndarray, identifiers: pa.Array) -> None:
        table = pa.table(
            {"key": pa.array(keys), "value": pa.array(values), "identifiers": identifiers}
        )
        with self._lock:
            self._acknowledged.append(table)

    def write(self, complete: bool, removed_file: Path | None) -> dict[str, Any]:
        """Merge what Insider acknowledged into the store; return the figures for the summary."""
        with self._lock:
            fresh = (
                pa.concat_tables(self._acknowledged)
                if self._acknowledged
                else pa.table(
                    {
                        "key": pa.array([], pa.uint64()),
                        "value": pa.array([], pa.uint64()),
                        "identifiers": pa.array([], pa.binary()),
                    }
                )
            )
            seen = np.concatenate(self._seen) if self._seen else np.zeros(0, np.uint64)
        old = self._old_table()
        figures: dict[str, Any] = {"fingerprints_written": fresh.num_rows}
        if complete and old.num_rows:
            gone = ~np.isin(old.column("key").to_numpy(), seen)
            removed = old.filter(pa.array(gone))
            figures["removed"] = removed.num_rows
            if removed.num_rows:
                if removed_file is not None:
                    _write_removed(removed, removed_file)
                    figures["removed_file"] = str(removed_file)
                old = old.filter(pa.array(~gone))
        # The newest fingerprint of each user wins: fresh ones replace the stored ones.
        kept = old.filter(pa.array(~np.isin(old.column("key").to_numpy(), fresh["key"].to_numpy())))
        merged = pa.concat_tables([kept, fresh.cast(kept.schema)])
        order = np.argsort(merged.column("key").to_numpy(), kind="stable")
        merged = merged.take(pa.array(order))
        _, last = np.unique(merged.column("key").to_numpy()[::-1], return_index=True)
        merged = merged.take(pa.array(np.sort(len(merged) - 1 - last)))
        self._save(merged)
        figures["fingerprints_stored"] = merged.num_rows
        return figures

    def _old_table(self) -> pa.Table:
        empty = pa.table(
            {
                "key": pa.array([], pa.uint64()),
                "value": pa.array([], pa.uint64()),
                "identifiers": pa.array([], pa.binary()),
            }
        )
        if not len(self.keys) or not self.path.exists():
            return empty
        return pq.read_table(self.path).cast(empty.schema)

    def _save(self, table: pa.Table) -> None:
        metadata = {_SCOPE_KEY: orjson.dumps(self.scope)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        os.close(handle)
        try:
            pq.write_table(
                table.replace_schema_metadata(metadata),
                name,
                compression="zstd",
                row_group_size=1 << 20,
            )
            with open(name, "rb") as written:
                os.fsync(written.fileno())
            os.replace(name, self.path)
        except OSError as error:
            raise JobError(
                f"out.fingerprint_file: cannot write {self.path}: {error.strerror or error}; the "
                "users sent are at Insider, the next run sends them again"
            ) from None
        finally:
            Path(name).unlink(missing_ok=True)


def _write_removed(removed: pa.Table, path: Path) -> None:
    """One flat identifiers object per line (custom identifiers beside the default ones)."""
    lines = []
    for text in removed.column("identifiers").to_pylist():
        identifiers = orjson.loads(text)
        custom = identifiers.pop("custom", {})
        lines.append(orjson.dumps({**identifiers, **custom}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def _describe(scope: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "none"


class TaskChanges:
    """One task's part of ``only_changed``: which rows to send, and which Insider took."""

    def __init__(self, store: FingerprintStore) -> None:
        self.store = store
        self.unchanged = 0
        self._lock = threading.Lock()
        # rows sent (changed), with their key, fingerprint and identifiers JSON
        self._rows: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._identifiers: list[pa.Array] = []
        self._requests: dict[int, np.ndarray] = {}  # request key -> its rows
        self._acknowledged: list[np.ndarray] = []
        self._refused: set[int] = set()  # rows the server refused

    def select(
        self, rows: np.ndarray, texts: pa.Array, identifiers: pa.Array, valid: np.ndarray | None
    ) -> np.ndarray:
        """Of a chunk's users (``identifiers`` for all rows; ``rows``/``texts`` the valid ones),
        the positions among the valid ones that changed; remembers them, counts the others."""
        keys = hashes(identifiers)
        self.store.seen(keys)  # every user of the source, valid or not, is still there
        if valid is not None:
            keys, identifiers = keys[valid], identifiers.filter(pa.array(valid))
        values = hashes(texts)
        changed = ~self.store.unchanged(keys, values)
        with self._lock:
            self.unchanged += int(len(changed) - changed.sum())
            self._rows.append(rows[changed])
            self._keys.append(keys[changed])
            self._values.append(values[changed])
            self._identifiers.append(identifiers.filter(pa.array(changed)))
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
        """Hand the store the fingerprints of the users Insider acknowledged."""
        with self._lock:
            if not self._rows or not self._acknowledged:
                return
            rows = np.concatenate(self._rows)
            taken = np.concatenate(self._acknowledged)
            if self._refused:
                taken = taken[~np.isin(taken, np.fromiter(self._refused, np.int64))]
            mask = np.isin(rows, taken)
            identifiers = pa.concat_arrays([a.cast(pa.binary()) for a in self._identifiers])
            self.store.acknowledged(
                np.concatenate(self._keys)[mask],
                np.concatenate(self._values)[mask],
                identifiers.filter(pa.array(mask)),
            )
            self._rows.clear()
