"""Batches, partial failures, splits, retries and the age flush, over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from helpers import API_KEY, PARTNER, bodies
from werkzeug import Request, Response

from arrowbulk import InputPlugin, hookimpl
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.plugins.insider import steps as insider_steps
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job


def users(count: int, **extra: list[Any]) -> pa.Table:
    return pa.table(
        {
            "uuid": [f"u{i:05d}" for i in range(count)],
            "name": [f"n{i}" for i in range(count)],
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("rows", "sizes"), [(1000, [1000]), (1001, [1000, 1]), (2500, [1000, 1000, 500])]
)
def test_requests_close_at_exactly_1000_records(
    run_insider, sandbox, rows: int, sizes: list[int]
) -> None:
    run = run_insider(users(rows))
    assert run.code == 0, run.err
    assert (
        sorted((len(b["users"]) for b in bodies(sandbox)), reverse=True) == sizes
    )  # sent in parallel
    assert sorted(u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]) == [
        f"u{i:05d}" for i in range(rows)
    ]


def test_requests_close_just_under_5_000_000_bytes(run_insider, sandbox) -> None:
    blob = "x" * 49_000
    run = run_insider(users(250, blob=[blob] * 250))
    assert run.code == 0, run.err
    sizes = sorted((r["bytes"] for r in sandbox.requests), reverse=True)  # sent in parallel
    one_user = len(json.dumps(bodies(sandbox)[0]["users"][0], separators=(",", ":"))) + 1
    assert len(sizes) == 3 and sum(len(b["users"]) for b in bodies(sandbox)) == 250
    for size in sizes[:-1]:
        assert 5_000_000 - one_user < size <= 5_000_000


def test_a_record_larger_than_a_request_is_rejected_with_a_reason(run_insider, sandbox) -> None:
    run = run_insider(users(2, blob=["x" * 6_000_000, "small"]), skip_invalid_records=True)
    assert run.code == 0, run.err
    assert run.summary["rejected_by_reason"] == {"too_large": 1}
    assert "a request may be at most 5,000,000" in run.rejects[0]["message"]
    assert [u["identifiers"]["uuid"] for u in bodies(sandbox)[0]["users"]] == ["u00001"]


def test_partial_failures_map_back_to_their_source_rows(run_insider, httpserver) -> None:
    answer = {
        "data": {
            "successful": {"count": 2},
            "fail": {
                "count": 1,
                "errors": {
                    "users.1.identifiers.*.regexp(phone_number)": [
                        "user has an invalid phone number: +900000000"
                    ]
                },
            },
        }
    }
    httpserver.expect_request("/api/user/v1/upsert", method="POST").respond_with_json(answer)
    # Row 1 fails validation here, so the server's users.1 is source row 2.
    table = pa.table(
        {
            "uuid": ["u0", "u1", "u2", "u3"],
            "phone_number": ["+905551112233", "bad", "+900000000", "+905551112244"],
            "name": list("abcd"),
        }
    )
    run = run_insider(table, endpoint=httpserver.url_for("").rstrip("/"), skip_invalid_records=True)
    assert run.code == 0, run.err
    assert run.rows == {"read": 4, "accepted": 2, "rejected": 2, "unsent": 0}
    server = [r for r in run.rejects if r["stage"] == "server"]
    assert [(r["row"], r["rule"]) for r in server] == [
        (2, "server: identifiers.*.regexp(phone_number)")
    ]
    assert server[0]["record"] == {
        "uuid": "u2",
        "phone_number": "+900000000",
        "name": "c",
    }  # the source row
    assert server[0]["sent"]["identifiers"]["uuid"] == "u2"  # and what Insider refused
    assert "invalid phone number" in server[0]["message"]


def test_a_refused_user_of_an_events_request_rejects_all_its_events(
    run_insider, httpserver
) -> None:
    answer = {
        "data": {
            "successful": {"count": 2},
            "fail": {"count": 1, "errors": {"users.1.events.0.event_name": ["unknown"]}},
        }
    }
    httpserver.expect_request("/api/user/v1/upsert", method="POST").respond_with_json(answer)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    table = pa.table(
        {
            "uuid": ["u0", "u1", "u0", "u1", "u2"],
            "event_name": ["a", "b", "c", "d", "e"],
            "timestamp": pa.array([now] * 5, pa.timestamp("s", tz="UTC")),
        }
    )
    run = run_insider(
        table,
        endpoint=httpserver.url_for("").rstrip("/"),
        export_mode="USER_EVENTS",
        skip_invalid_records=True,
    )
    assert run.code == 0, run.err
    (request,) = httpserver.log
    users = json.loads(request[0].data)["users"]
    assert [(u["identifiers"]["uuid"], [e["event_name"] for e in u["events"]]) for u in users] == [
        ("u0", ["a", "c"]),
        ("u1", ["b", "d"]),
        ("u2", ["e"]),
    ]
    assert run.rows == {"read": 5, "accepted": 3, "rejected": 2, "unsent": 0}
    assert sorted(r["row"] for r in run.rejects) == [1, 3]  # both events of users.1


def test_partial_failure_without_skipping_stops_the_job(run_insider, httpserver) -> None:
    answer = {
        "data": {
            "successful": {"count": 1},
            "fail": {"count": 1, "errors": {"users.0.attributes": ["no"]}},
        }
    }
    httpserver.expect_request("/api/user/v1/upsert").respond_with_json(answer)
    run = run_insider(users(2), endpoint=httpserver.url_for("").rstrip("/"))
    assert run.code == 1
    assert "row 0: Insider refused the record (no)" in run.err


def test_a_refused_batch_is_bisected_until_the_bad_record_is_isolated(
    run_insider, httpserver
) -> None:
    def handler(request: Request) -> Response:
        body = json.loads(request.data)
        if any(u["identifiers"]["uuid"] == "u00005" for u in body["users"]):
            return Response(
                json.dumps({"error": "poisoned: bad request"}),
                status=400,
                content_type="application/json",
            )
        count = len(body["users"])
        return Response(
            json.dumps({"data": {"successful": {"count": count}, "fail": {}}}),
            content_type="application/json",
        )

    httpserver.expect_request("/api/user/v1/upsert").respond_with_handler(handler)
    run = run_insider(
        users(8), endpoint=httpserver.url_for("").rstrip("/"), skip_invalid_records=True
    )
    assert run.code == 0, run.err
    assert run.rows == {"read": 8, "accepted": 7, "rejected": 1, "unsent": 0}
    assert [(r["row"], r["message"]) for r in run.rejects] == [(5, "poisoned: bad request")]
    assert run.summary["details"]["split_requests"] == 3  # 8 -> 4 -> 2 -> 1


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_first": 2, "fail_status": 500},
        {"fail_first": 2, "fail_status": 503},
        {"rate_limit_first": 3, "retry_after": "0"},
        {"rate_limit_first": 2},
        {"drop_first": 2},
    ],
    ids=["500", "503", "429-retry-after", "429", "dropped"],
)
def test_transient_failures_are_retried(run_insider, sandbox, faults: dict[str, Any]) -> None:
    sandbox.set_faults(**faults)
    run = run_insider(users(30), max_records_per_request=10)
    assert run.code == 0, run.err
    assert run.rows == {"read": 30, "accepted": 30, "rejected": 0, "unsent": 0}
    assert len(sandbox.profiles()) == 30
    assert run.summary["details"]["retries"] >= 2


def test_a_slow_answer_times_out_and_is_retried(run_insider, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.6)
    threading.Timer(0.5, lambda: sandbox.set_faults(delay_seconds=0.0)).start()
    run = run_insider(users(5), read_timeout=0.3)
    assert run.code == 0, run.err
    assert run.summary["details"]["retries"] >= 1
    assert len(sandbox.profiles()) == 5


def test_when_retries_run_out_the_job_fails_and_counts_the_unsent(run_insider, sandbox) -> None:
    sandbox.set_faults(fail_first=1000, fail_status=502)
    run = run_insider(
        users(25), max_records_per_request=10, max_retries=2, max_requests_in_flight=1
    )
    assert run.code == 1
    assert "gave up after 3 attempts (out.max_retries=2): HTTP 502" in run.err
    assert run.rows["read"] == 25 and run.rows["accepted"] == 0
    assert run.rows["read"] == run.rows["accepted"] + run.rows["rejected"] + run.rows["unsent"]


class SlowInput(InputPlugin):
    """Three rows, a pause longer than the batch wait, then three more."""

    type_name = "slow"
    yielded_second_at = 0.0

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {"type": "object"}

    def schema(self) -> pa.Schema:
        return users(1).schema

    def task_count(self) -> int:
        return 1

    def read(self, task_index: int):
        yield users(3).to_batches()[0]
        time.sleep(1.2)
        SlowInput.yielded_second_at = time.time()
        yield users(6).slice(3).to_batches()[0]


class SlowPlugins:
    @hookimpl
    def register_input_plugins(self, register: Callable[[type[InputPlugin]], None]) -> None:
        register(SlowInput)


def test_a_batch_is_sent_when_its_oldest_record_waited_long_enough(sandbox, tmp_path: Path) -> None:
    out = {
        "type": "insider",
        "api_key": API_KEY,
        "partner_name": PARTNER,
        "endpoint": sandbox.url,
        "max_batch_wait_seconds": 0.3,
        "skip_invalid_records": True,
    }
    pipeline = pipeline_from_mapping({"in": {"type": "slow"}, "out": out}, tmp_path)
    summary = Job(pipeline, load_registry(extra=[SlowPlugins()])).run()
    assert summary.status == "success", summary.error
    first, _second = sandbox.requests
    assert first["at"] < SlowInput.yielded_second_at  # sent while the input was still waiting
    assert [len(b["users"]) for b in bodies(sandbox)] == [3, 3]
    assert summary.accepted == 6


def test_steps_are_bounded_by_bytes_as_well_as_rows(monkeypatch) -> None:
    monkeypatch.setattr(insider_steps, "CHUNK_BYTES", 4000)
    batch = pa.record_batch({"uuid": [f"u{i}" for i in range(100)], "bio": ["b" * 400] * 100})
    steps = list(insider_steps.steps(batch))
    assert 1 < len(steps) < 100 and all(s.nbytes <= 4000 for s in steps)
    assert pa.Table.from_batches(steps).equals(pa.Table.from_batches([batch]))


@pytest.mark.parametrize("skip", [True, False])
def test_wide_rows_keep_their_row_numbers_across_steps(
    run_insider, sandbox, monkeypatch, skip: bool
) -> None:
    monkeypatch.setattr(insider_steps, "CHUNK_BYTES", 3000)  # steps of a few rows
    emails = [f"user{i}@example.com" for i in range(50)]
    emails[37] = "not-an-email"
    run = run_insider(users(50, bio=["b" * 400] * 50, email=emails), skip_invalid_records=skip)
    if skip:
        assert run.code == 0, run.err
        assert run.rows == {"read": 50, "accepted": 49, "rejected": 1, "unsent": 0}
        assert [r["row"] for r in run.rejects] == [37]
        sent = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
        assert sorted(sent) == sorted(f"u{i:05d}" for i in range(50) if i != 37)
    else:
        assert run.code != 0
        assert "row 37" in run.err and "Nothing was sent" in run.err
        assert bodies(sandbox) == []


def test_the_sandbox_answers_its_inspection_endpoints_over_http(run_insider, sandbox) -> None:
    import urllib.error
    import urllib.request

    events = pa.table(
        {
            "uuid": ["u1", "u1", "u2"],
            "event_name": ["page_view", "login", "page_view"],
            "timestamp": pa.array([int(time.time()) - 60] * 3, pa.timestamp("s", tz="UTC")),
        }
    )
    assert run_insider(events, export_mode="USER_EVENTS").code == 0

    def get(path: str) -> Any:
        with urllib.request.urlopen(sandbox.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    assert [p["identifiers"]["uuid"] for p in get("/_sandbox/profiles")] == ["u1", "u2"]
    assert sorted((e["identifiers"]["uuid"], e["event_name"]) for e in get("/_sandbox/events")) == [
        ("u1", "login"),
        ("u1", "page_view"),
        ("u2", "page_view"),
    ]
    [logged] = get("/_sandbox/requests")
    assert (logged["method"], logged["path"], logged["status"]) == (
        "POST",
        "/api/user/v1/upsert",
        200,
    )
    assert len(logged["body"]["users"]) == 2
    stats = get("/_sandbox/stats")
    assert (stats["requests"], stats["by_status"], stats["profiles"]) == (1, {"200": 1}, 2)
    with pytest.raises(urllib.error.HTTPError) as missing:
        get("/_sandbox/nothing")
    assert missing.value.code == 404
    assert "/_sandbox/requests" in missing.value.read().decode()
