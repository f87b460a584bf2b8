"""Faults the export must survive, against the sandbox over real HTTP on loopback.

In every scenario the sandbox ends in the state of a fault-free run, every record read is
accepted, rejected or unsent (the counts add up), and records sent twice stay within the
in-flight window. Run with ``-s`` to see each scenario's figures.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from helpers import bodies

from arrowbulk.plugins.insider.client import RateLimiter, _retry_after

ROWS = 400
PER_REQUEST = 20
IN_FLIGHT = 3


def users() -> pa.Table:
    return pa.table(
        {
            "uuid": [f"u{i:04d}" for i in range(ROWS)],
            "name": [f"n{i}" for i in range(ROWS)],
            "tags": pa.array([[f"t{i % 5}"] for i in range(ROWS)], pa.list_(pa.string())),
        }
    )


def expected_profiles() -> list[dict[str, Any]]:
    return [
        {
            "identifiers": {"uuid": f"u{i:04d}"},
            "attributes": {"name": f"n{i}", "custom": {"tags": [f"t{i % 5}"]}},
            "events": [],
        }
        for i in range(ROWS)
    ]


SCENARIOS = {
    "first 5 requests 500": {"fail_first": 5, "fail_status": 500},
    "first 5 requests 503": {"fail_first": 5, "fail_status": 503},
    "20% random 5xx": {"fail_rate": 0.2, "fail_status": 502, "seed": 7},
    "429 storm with Retry-After": {"rate_limit_first": 12, "retry_after": "0.05"},
    "429 storm without Retry-After": {"rate_limit_first": 12},
    "connections dropped": {"drop_first": 6},
}


@pytest.mark.parametrize("faults", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_the_export_survives(run_insider, sandbox, faults: dict[str, Any], request) -> None:
    sandbox.set_faults(**faults)
    started = time.monotonic()
    run = run_insider(
        users(),
        max_records_per_request=PER_REQUEST,
        max_requests_in_flight=IN_FLIGHT,
        max_retries=12,
    )
    seconds = time.monotonic() - started
    assert run.code == 0, run.err
    rows = run.rows
    assert rows == {"read": ROWS, "accepted": ROWS, "rejected": 0, "unsent": 0}
    sent = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
    resent = len(sent) - len(set(sent))
    assert resent <= IN_FLIGHT * PER_REQUEST
    profiles = sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"])
    assert profiles == expected_profiles()
    print(
        f"\n{request.node.callspec.id}: {ROWS} records, {len(sandbox.requests)} requests, "
        f"{run.summary['details']['retries']} retries, {resent} resent, {seconds:.2f}s"
    )


def test_a_server_that_stops_and_comes_back(run_insider, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.1)
    threading.Timer(0.2, sandbox.outage, args=(1.0,)).start()
    run = run_insider(
        users(),
        max_records_per_request=PER_REQUEST,
        max_requests_in_flight=IN_FLIGHT,
        max_retries=12,
        backoff_base_seconds=0.1,
        backoff_max_seconds=0.5,
    )
    assert run.code == 0, run.err
    assert run.rows == {"read": ROWS, "accepted": ROWS, "rejected": 0, "unsent": 0}
    assert run.summary["details"]["retries"] >= 1
    sent = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
    assert len(sent) - len(set(sent)) <= IN_FLIGHT * PER_REQUEST
    assert sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"]) == expected_profiles()


def test_responses_slower_than_the_timeout(run_insider, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.4)
    threading.Timer(1.0, lambda: sandbox.set_faults(delay_seconds=0.0)).start()
    run = run_insider(
        users(),
        max_records_per_request=50,
        max_requests_in_flight=2,
        read_timeout=0.2,
        max_retries=12,
    )
    assert run.code == 0, run.err
    assert run.rows == {"read": ROWS, "accepted": ROWS, "rejected": 0, "unsent": 0}
    assert run.summary["details"]["retries"] >= 1
    # A timed-out request may have been applied by the server too: at-least-once, same state.
    # Only records that were in flight while answers were slow came more than once.
    sent = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
    assert len({u for u in sent if sent.count(u) > 1}) <= 2 * 50
    assert sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"]) == expected_profiles()


def test_a_retry_budget_spent_stops_the_job_with_a_clear_error(run_insider, sandbox) -> None:
    sandbox.set_faults(fail_first=1000, fail_status=503)
    run = run_insider(users(), max_records_per_request=PER_REQUEST, max_retries=30, retry_budget=5)
    assert run.code == 1
    assert "the job's retry budget (out.retry_budget=5) is spent: HTTP 503" in run.err
    assert run.rows["read"] == run.rows["accepted"] + run.rows["rejected"] + run.rows["unsent"]


@pytest.mark.parametrize("status", [400, 404, 401])
def test_never_retried_statuses(run_insider, httpserver, status: int) -> None:
    httpserver.expect_request("/api/user/v1/upsert").respond_with_json(
        {"error": "no"}, status=status
    )
    run = run_insider(
        users().slice(0, 1), endpoint=httpserver.url_for("").rstrip("/"), skip_invalid_records=True
    )
    assert len(httpserver.log) == 1  # asked once, never again
    assert run.summary["details"].get("retries", 0) == 0


def test_the_rate_limiter_paces_requests_across_threads() -> None:
    limiter = RateLimiter(per_minute=600)  # 10 a second, bursts of 10
    stop = threading.Event()
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [limiter.acquire(stop) for _ in range(10)])
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 1.9  # 30 requests: 10 at once, then 10 a second


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    def Response(value: str) -> dict[str, str]:
        return {"Retry-After": value}

    assert _retry_after(Response("3")) == 3.0
    later = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True
    )
    assert 25 <= (_retry_after(Response(later)) or 0) <= 31
    assert _retry_after(Response("soon")) is None
