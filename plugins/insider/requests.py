"""Requests assembled from encoded users, closed by count, exact byte size, or age.

A request closes at ``max_records`` records, before its serialized body would pass
``max_bytes`` (counted on the bytes that will be sent, not estimated), or when its oldest
record has waited ``max_wait`` seconds. For events, rows of the same user within one request
share one user object. Every request remembers which source rows each of its users carries,
so a server's ``users.<i>`` error maps back to rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from arrowbulk.plugins.insider.config import InsiderTask, Operation

_IDENTIFIERS = b'{"identifiers":'
_EVENTS = b',"events":['
_CLOSE_EVENTS = b"]}"


@dataclass
class Request:
    """One HTTP request's worth of users."""

    body: bytes
    users: list[list[int]]  # per user object in the body: the source rows it carries
    user_texts: list[bytes]  # per user object: its JSON, for the reject file
    created: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> list[int]:
        return [row for rows in self.users for row in rows]

    @property
    def record_count(self) -> int:
        return sum(len(rows) for rows in self.users)

    def subset(self, user_indexes: list[int], builder: RequestBuilder) -> Request:
        """A request with only some of these users (to split or bisect a refused one)."""
        texts = [self.user_texts[i] for i in user_indexes]
        return Request(
            builder.wrap(texts), [self.users[i] for i in user_indexes], texts, self.created
        )


class RequestBuilder:
    """Collects users for one task; returns requests as they close."""

    def __init__(self, task: InsiderTask) -> None:
        self.task = task
        self.single = task.operation.one_user_per_request
        self.events = task.operation is Operation.EVENTS
        self.prefix, self.suffix = self._envelope(task)
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
        self._users: list[list[int]] = []
        self._texts: list[bytes] = []  # users, or for events: the identifiers text of each user
        self._events: list[list[bytes]] = []
        self._by_key: dict[bytes, int] = {}
        self._size = len(self.prefix) + len(self.suffix)
        self._records = 0
        self._created = 0.0

    @property
    def pending(self) -> int:
        return self._records

    def oldest(self) -> float | None:
        return self._created if self._records else None

    def fits_alone(self, text: bytes, key: bytes | None) -> bool:
        return (
            len(self.prefix) + len(self.suffix) + self._user_cost(text, key, None)
            <= self.task.max_bytes
        )

    def add(self, row: int, text: bytes, key: bytes | None = None) -> list[Request]:
        """Add one record; return the requests that closed (none, usually)."""
        closed: list[Request] = []
        index = self._by_key.get(key) if self.events and key is not None else None
        cost = self._user_cost(text, key, index)
        if self._records and (
            self._records >= self.task.max_records or self._size + cost > self.task.max_bytes
        ):
            closed.append(self._close_pending())
            index, cost = None, self._user_cost(text, key, None)
        if not self._records:
            self._created = time.monotonic()
        self._records += 1
        self._size += cost
        if index is not None:
            self._users[index].append(row)
            self._events[index].append(text)
        else:
            self._users.append([row])
            self._texts.append(key if self.events and key is not None else text)
            self._events.append([text])
            if self.events and key is not None:
                self._by_key[key] = len(self._users) - 1
        if self._records >= self.task.max_records or self.single:
            closed.append(self._close_pending())
        return closed

    def _user_cost(self, text: bytes, key: bytes | None, index: int | None) -> int:
        comma = 1 if self._users and (index is None) else 0
        if not self.events:
            return len(text) + comma
        if index is not None:
            return len(text) + 1
        assert key is not None
        return comma + len(_IDENTIFIERS) + len(key) + len(_EVENTS) + len(text) + len(_CLOSE_EVENTS)

    def close(self) -> Request | None:
        """Close the pending request, if any (at the end of a task, or when it is too old)."""
        return self._close_pending() if self._records else None

    def _close_pending(self) -> Request:
        if self.events:
            texts = [
                _IDENTIFIERS + key + _EVENTS + b",".join(events) + _CLOSE_EVENTS
                for key, events in zip(self._texts, self._events, strict=True)
            ]
        else:
            texts = self._texts
        request = Request(self.wrap(texts), self._users, texts, self._created)
        if len(request.body) != self._size:
            raise AssertionError(
                f"body size bookkeeping is off: {len(request.body)} != {self._size}"
            )
        self._reset()
        return request

    def wrap(self, user_texts: list[bytes]) -> bytes:
        if self.single:
            return user_texts[0]
        return self.prefix + b",".join(user_texts) + self.suffix
