"""Requests assembled from encoded users, closed by count, exact byte size, or age.

A request closes at ``max_records`` records, before its serialized body would pass
``max_bytes`` (counted on the bytes that will be sent, not estimated), or when its oldest
record has waited ``max_wait`` seconds. Users are cut into requests with cumulative byte
sums over whole batches (no Python work per row); for events, rows of the same user within
one request share one user object. Every request keeps the source rows of each user, so a
server's ``users.<i>`` error maps back to rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from arrowbulk.plugins.insider.config import InsiderTask, Operation

_IDENTIFIERS = b'{"identifiers":'
_EVENTS = b',"events":['
_CLOSE_EVENTS = b"]}"


@dataclass
class Request:
    """One HTTP request's worth of users."""

    body: bytes
    rows: np.ndarray  # source rows, grouped by user, in body order
    user_starts: np.ndarray  # user i carries rows[user_starts[i]:user_starts[i + 1]]
    user_texts: pa.Array  # each user object's JSON (binary), for rejects and splits
    created: float = field(default_factory=time.monotonic)

    @property
    def user_count(self) -> int:
        return len(self.user_starts) - 1

    @property
    def record_count(self) -> int:
        return len(self.rows)

    def rows_of(self, user: int) -> list[int]:
        rows: list[int] = self.rows[self.user_starts[user] : self.user_starts[user + 1]].tolist()
        return rows

    def user_text(self, user: int) -> bytes:
        text: bytes = self.user_texts[user].as_py()
        return text

    def subset(self, users: list[int], builder: RequestBuilder) -> Request:
        """A request with only some of these users (to split or bisect a refused one)."""
        texts = self.user_texts.take(pa.array(users, pa.int64()))
        groups = [self.rows_of(u) for u in users]
        starts = np.cumsum([0, *map(len, groups)])
        rows = np.array([r for g in groups for r in g], np.int64)
        return Request(builder.wrap(texts), rows, starts, texts, self.created)


def _body(prefix: bytes, texts: pa.Array, suffix: bytes) -> bytes:
    """``prefix`` + the JSON texts joined by commas + ``suffix``, with one copy of the bytes."""
    lists = pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts)
    joined = pc.binary_join(lists, b",")
    start, end = np.frombuffer(joined.buffers()[1], dtype=np.int32)[
        joined.offset : joined.offset + 2
    ]
    return b"".join((prefix, memoryview(joined.buffers()[2])[start:end], suffix))


class RequestBuilder:
    """Collects one task's users; returns requests as they close."""

    def __init__(self, task: InsiderTask) -> None:
        self.task = task
        self.single = task.operation.one_user_per_request
        self.events = task.operation is Operation.EVENTS
        self.prefix, self.suffix = self._envelope(task)
        self.overhead = len(self.prefix) + len(self.suffix)
        self._reset()

    @staticmethod
    def _envelope(task: InsiderTask) -> tuple[bytes, bytes]:
        if task.operation.one_user_per_request:
            return b"", b""
        tail = b"]"
        if task.operation.path.endswith("/upsert"):
            tail += b',"skip_hook":' + (b"true" if task.skip_hook else b"false")
            if task.error_callback_endpoint:
                tail += b',"error_callback_endpoint":' + orjson.dumps(task.error_callback_endpoint)
        return b'{"users":[', tail + b"}"

    def _reset(self) -> None:
        self._chunks: list[tuple[np.ndarray, pa.Array]] = []  # (rows, texts) of pending users
        self._keys: list[bytes] = []  # events: each pending user's identifiers JSON
        self._events: list[list[bytes]] = []
        self._event_rows: list[list[int]] = []
        self._by_key: dict[bytes, int] = {}
        self._size = self.overhead
        self._records = 0
        self._created = 0.0

    @property
    def pending(self) -> int:
        return self._records

    def oldest(self) -> float | None:
        return self._created if self._records else None

    def first_pending_row(self) -> int | None:
        """The lowest source row still waiting in this builder, if any."""
        if not self._records:
            return None
        if self.events:
            return min(rows[0] for rows in self._event_rows)
        return int(self._chunks[0][0][0])

    def too_large(self, texts: pa.Array, keys: pa.Array | None) -> np.ndarray:
        """Rows whose record alone would make a request over ``max_bytes``."""
        cost = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        if keys is not None:
            cost = (
                cost
                + pc.binary_length(keys).to_numpy(zero_copy_only=False)
                + len(_IDENTIFIERS + _EVENTS + _CLOSE_EVENTS)
            )
        return np.asarray(self.overhead + cost > self.task.max_bytes)

    def add(self, rows: np.ndarray, texts: pa.Array, keys: pa.Array | None = None) -> list[Request]:
        """Queue records (source rows, their JSON, for events their identifiers' JSON)."""
        if len(rows) == 0:
            return []
        if not self._records:
            self._created = time.monotonic()
        if self.events:
            assert keys is not None
            return self._add_events(rows.tolist(), texts.to_pylist(), keys.to_pylist())
        return self._add_users(rows, texts)

    def _add_users(self, rows: np.ndarray, texts: pa.Array) -> list[Request]:
        closed: list[Request] = []
        costs = (
            pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        )  # a comma each
        ends = np.cumsum(costs)
        start, total = 0, len(rows)
        while start < total:
            base = ends[start - 1] if start else 0
            # The first user of a request has no comma before it.
            budget = self.task.max_bytes - self._size + (1 if not self._records else 0)
            fit = int(np.searchsorted(ends, base + budget, side="right")) - start
            take = min(fit, self.task.max_records - self._records, total - start)
            if take <= 0:
                closed.append(self._close_pending())
                continue
            if not self._records:
                self._created = time.monotonic()
            self._chunks.append((rows[start : start + take], texts.slice(start, take)))
            self._size += int(ends[start + take - 1] - base) - (1 if not self._records else 0)
            self._records += take
            start += take
            if self._records >= self.task.max_records or start < total or self.single:
                closed.append(self._close_pending())
        return closed

    def _add_events(self, rows: list[int], texts: list[bytes], keys: list[bytes]) -> list[Request]:
        closed: list[Request] = []
        for row, text, key in zip(rows, texts, keys, strict=True):
            index = self._by_key.get(key)
            cost = len(text) + 1 if index is not None else self._new_user_cost(key, text)
            if self._records and (
                self._records >= self.task.max_records or self._size + cost > self.task.max_bytes
            ):
                closed.append(self._close_pending())
                index, cost = None, self._new_user_cost(key, text)
            if not self._records:
                self._created = time.monotonic()
            self._records += 1
            self._size += cost
            if index is None:
                self._by_key[key] = len(self._keys)
                self._keys.append(key)
                self._events.append([text])
                self._event_rows.append([row])
            else:
                self._events[index].append(text)
                self._event_rows[index].append(row)
        if self._records >= self.task.max_records:
            closed.append(self._close_pending())
        return closed

    def _new_user_cost(self, key: bytes, text: bytes) -> int:
        comma = 1 if self._keys else 0
        return comma + len(_IDENTIFIERS) + len(key) + len(_EVENTS) + len(text) + len(_CLOSE_EVENTS)

    def close(self) -> Request | None:
        """Close the pending request, if any (at the end of a task, or when it is too old)."""
        return self._close_pending() if self._records else None

    def _close_pending(self) -> Request:
        if self.events:
            user_texts = pa.array(
                [
                    _IDENTIFIERS + k + _EVENTS + b",".join(e) + _CLOSE_EVENTS
                    for k, e in zip(self._keys, self._events, strict=True)
                ],
                pa.binary(),
            )
            rows = np.array([r for group in self._event_rows for r in group], np.int64)
            starts = np.cumsum([0, *map(len, self._event_rows)])
        else:
            user_texts = pa.concat_arrays([texts for _, texts in self._chunks])
            rows = np.concatenate([chunk_rows for chunk_rows, _ in self._chunks])
            starts = np.arange(len(rows) + 1)
        request = Request(self.wrap(user_texts), rows, starts, user_texts, self._created)
        if len(request.body) != self._size:
            raise AssertionError(
                f"body size bookkeeping is off: {len(request.body)} != {self._size}"
            )
        self._reset()
        return request

    def wrap(self, user_texts: pa.Array) -> bytes:
        if self.single:
            return bytes(user_texts[0].as_py())
        return _body(self.prefix, user_texts, self.suffix)
