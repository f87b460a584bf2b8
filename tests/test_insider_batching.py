"""Events cut into requests, whole windows at a time, against the plain row-by-row rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_insider_encode import task_for

from arrowbulk.plugins.insider.batching import Request, RequestBuilder


def reference_requests(
    events: list[tuple[bytes, bytes]], max_records: int, max_bytes: int, overhead: int
) -> list[list[tuple[bytes, list[int]]]]:
    """Row by row: a request closes before the record that would pass a limit; a user's
    events share its object. Returns, per request, (identifiers, rows) per user in order."""
    requests: list[list[tuple[bytes, list[int]]]] = []
    users: dict[bytes, list[int]] = {}
    size, records = overhead, 0
    envelope = len(b'{"identifiers":' + b',"events":[' + b"]}")
    for row, (key, text) in enumerate(events):
        cost = (
            len(text) + 1 if key in users else (1 if users else 0) + envelope + len(key) + len(text)
        )
        if records and (records >= max_records or size + cost > max_bytes):
            requests.append(list(users.items()))
            users, size, records = {}, overhead, 0
            cost = envelope + len(key) + len(text)
        users.setdefault(key, []).append(row)
        size, records = size + cost, records + 1
    if records:
        requests.append(list(users.items()))
    return requests


def summary(request: Request) -> list[tuple[bytes, list[int]]]:
    users = orjson.loads(request.body)["users"]
    return [(orjson.dumps(user["identifiers"]), request.rows_of(i)) for i, user in enumerate(users)]


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], list[int], int, int]:
    count = draw(st.integers(min_value=1, max_value=60))
    users = draw(st.integers(min_value=1, max_value=8))
    events = [
        (
            orjson.dumps({"uuid": f"u{draw(st.integers(0, users - 1))}"}),
            orjson.dumps({"event_name": "x" * draw(st.integers(0, 40))}),
        )
        for _ in range(count)
    ]
    cuts = sorted(draw(st.lists(st.integers(1, count - 1), max_size=4))) if count > 1 else []
    return events, cuts, draw(st.integers(1, 12)), draw(st.integers(150, 900))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams())
def test_events_are_cut_like_the_row_by_row_rule(
    stream: tuple[list[tuple[bytes, bytes]], list[int], int, int],
) -> None:
    events, cuts, max_records, max_bytes = stream
    task = dataclasses.replace(
        task_for(export_mode="USER_EVENTS"), max_records=max_records, max_bytes=max_bytes
    )
    builder = RequestBuilder(task)
    keys = pa.array([key for key, _ in events], pa.binary())
    texts = pa.array([text for _, text in events], pa.binary())
    got: list[Request] = []
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        rows = np.arange(start, end, dtype=np.int64)
        got += builder.add(rows, texts.slice(start, end - start), keys.slice(start, end - start))
    last = builder.close()
    got += [last] if last is not None else []
    # Every body was checked against the builder's own byte count when it closed.
    overhead = builder.overhead
    want = reference_requests(events, max_records, max_bytes, overhead)
    assert [summary(r) for r in got] == want
