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

from arrowbulk.plugins.insider.config import InsiderTask
from arrowbulk.plugins.insider.operations import Envelope, Takes

_IDENTIFIERS = b'{"identifiers":'
_EVENTS = b',"events":['
_CLOSE_EVENTS = b"]}"
_USER_ENVELOPE = len(_IDENTIFIERS) + len(_EVENTS) + len(_CLOSE_EVENTS)


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
        spec = task.operation.spec
        self.single = spec.one_user_per_request
        self.events = spec.takes is Takes.EVENTS
        self.prefix, self.suffix = self._envelope(task)
        self.overhead = len(self.prefix) + len(self.suffix)
        self._reset()

    @staticmethod
    def _envelope(task: InsiderTask) -> tuple[bytes, bytes]:
        envelope = task.operation.spec.envelope
        if envelope is Envelope.SINGLE:
            return b"", b""
        tail = b"]"
        if envelope is Envelope.UPSERT:
            tail += b',"skip_hook":' + (b"true" if task.skip_hook else b"false")
            if task.error_callback_endpoint:
                tail += b',"error_callback_endpoint":' + orjson.dumps(task.error_callback_endpoint)
        return b'{"users":[', tail + b"}"

    def _reset(self) -> None:
        self._chunks: list[tuple[np.ndarray, pa.Array]] = []  # (rows, texts) of pending records
        self._keys: list[pa.Array] = []  # events: each pending record's identifiers JSON
        self._users = 0  # events: distinct users pending
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
        return int(self._chunks[0][0][0])  # a task's rows arrive in order

    def too_large(self, texts: pa.Array, keys: pa.Array | None) -> np.ndarray:
        """Rows whose record alone would make a request over ``max_bytes``."""
        cost = _lengths(texts)
        if keys is not None:
            cost = cost + _lengths(keys) + _USER_ENVELOPE
        return np.asarray(self.overhead + cost > self.task.max_bytes)

    def add(self, rows: np.ndarray, texts: pa.Array, keys: pa.Array | None = None) -> list[Request]:
        """Queue records (source rows, their JSON, for events their identifiers' JSON)."""
        if len(rows) == 0:
            return []
        if not self._records:
            self._created = time.monotonic()
        if self.events:
            assert keys is not None
            return self._add_events(rows, texts, keys)
        return self._add_users(rows, texts)

    def _add_users(self, rows: np.ndarray, texts: pa.Array) -> list[Request]:
        closed: list[Request] = []
        costs = _lengths(texts) + 1  # a comma each
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
            self._chunks.append((rows[start : start + take], _narrow(texts.slice(start, take))))
            self._size += int(ends[start + take - 1] - base) - (1 if not self._records else 0)
            self._records += take
            start += take
            if self._records >= self.task.max_records or start < total or self.single:
                closed.append(self._close_pending())
        return closed

    def _add_events(self, rows: np.ndarray, texts: pa.Array, keys: pa.Array) -> list[Request]:
        """Events, in windows of the records a request still takes; a request holds one user
        object per distinct identifiers, with that user's events in row order."""
        closed: list[Request] = []
        text_sizes = _lengths(texts)
        key_sizes = _lengths(keys)
        start, total = 0, len(rows)
        while start < total:
            take = min(self.task.max_records - self._records, total - start)
            window = slice(start, start + take)
            new_user = self._new_users(keys.slice(start, take))
            # An event of a known user costs its text and a comma; a new user adds its
            # object's envelope and identifiers, and a comma unless it is the request's first.
            costs = text_sizes[window] + 1
            costs[new_user] += _USER_ENVELOPE + key_sizes[window][new_user]
            if not self._users and new_user.any():
                costs[np.argmax(new_user)] -= 1
            ends = np.cumsum(costs)
            fit = int(np.searchsorted(ends, self.task.max_bytes - self._size, side="right"))
            if fit == 0 and self._records:
                closed.append(self._close_pending())
                continue
            fit = max(fit, 1)  # alone over max_bytes: too_large() keeps such records out
            if not self._records:
                self._created = time.monotonic()
            self._chunks.append((rows[start : start + fit], _narrow(texts.slice(start, fit))))
            self._keys.append(_narrow(keys.slice(start, fit)))
            self._size += int(ends[fit - 1])
            self._records += fit
            self._users += int(np.count_nonzero(new_user[:fit]))
            start += fit
            if self._records >= self.task.max_records or fit < take:
                closed.append(self._close_pending())
        return closed

    def _new_users(self, keys: pa.Array) -> np.ndarray:
        """Per record: the first of its user in ``keys`` and not among the pending users."""
        codes = keys.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        new = np.zeros(len(keys), dtype=bool)
        new[np.unique(codes, return_index=True)[1]] = True
        if self._records:
            pending = pa.concat_arrays(self._keys)
            new &= ~pc.is_in(keys, value_set=pending).to_numpy(zero_copy_only=False)
        return new

    def close(self) -> Request | None:
        """Close the pending request, if any (at the end of a task, or when it is too old)."""
        return self._close_pending() if self._records else None

    def _close_pending(self) -> Request:
        rows = np.concatenate([chunk_rows for chunk_rows, _ in self._chunks])
        texts = pa.concat_arrays([chunk_texts for _, chunk_texts in self._chunks])
        if self.events:
            rows, starts, user_texts = _users_of_events(rows, texts, pa.concat_arrays(self._keys))
        else:
            starts, user_texts = np.arange(len(rows) + 1), texts
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


def _narrow(texts: pa.Array) -> pa.Array:
    """A request's share of a batch as plain binary: a batch spliced from over 2 GiB of pieces
    is large_binary, but the part of it one request holds is at most max_bytes."""
    return texts.cast(pa.binary()) if pa.types.is_large_binary(texts.type) else texts


def _lengths(texts: pa.Array) -> np.ndarray:
    lengths: np.ndarray = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths


def _users_of_events(
    rows: np.ndarray, texts: pa.Array, keys: pa.Array
) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Events grouped by user, users in order of their first event: the rows in body order,
    each user's first position among them, and each user's JSON."""
    encoded = keys.dictionary_encode()  # dictionary in order of first appearance
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    starts = np.zeros(len(encoded.dictionary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(encoded.dictionary)), out=starts[1:])
    events = pa.ListArray.from_arrays(
        pa.array(starts.astype(np.int32)), texts.take(pa.array(order))
    )
    user_texts = pc.binary_join_element_wise(
        _IDENTIFIERS, encoded.dictionary, _EVENTS, pc.binary_join(events, b","), _CLOSE_EVENTS, b""
    )
    return rows[order], starts, user_texts
