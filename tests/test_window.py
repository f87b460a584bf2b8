"""The in-flight window adapts: it grows while answers are clean and fast (an API far away
needs many requests in flight), and shrinks on 429s so a quota is met without storms."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from arrowbulk.plugins.insider.window import AdaptiveWindow


def users(rows: int) -> pa.Table:
    return pa.table(
        {"uuid": [f"u{i:05d}" for i in range(rows)], "name": [f"n{i}" for i in range(rows)]}
    )


def test_the_window_doubles_per_round_trip_then_halves_once_per_round_trip() -> None:
    window = AdaptiveWindow(ceiling=64, max_bytes=10**9, initial=4)
    for _ in range(3):  # three round trips of a full window, each answer fast and clean
        taken = int(window.limit)
        assert all(window.acquire(100, timeout=0) for _ in range(taken))
        for _ in range(taken):
            window.observe(0.15, overloaded=False)
            window.release(100)
    assert window.limit == 32
    for _ in range(10):  # a burst of 429s from one window: one halving, not ten
        window.observe(0.15, overloaded=True)
    assert window.limit == 16 and not window.slow_start


def test_the_window_does_not_grow_while_it_is_not_full() -> None:
    window = AdaptiveWindow(ceiling=64, max_bytes=10**9, initial=4)
    for _ in range(100):  # one request at a time: a slow producer
        assert window.acquire(100, timeout=0)
        window.observe(0.01, overloaded=False)
        window.release(100)
    assert window.limit == 4


def test_bytes_in_flight_are_bounded_but_one_request_always_goes() -> None:
    window = AdaptiveWindow(ceiling=64, max_bytes=1000, initial=8)
    assert window.acquire(5000, timeout=0)  # alone: allowed
    assert not window.acquire(10, timeout=0)
    window.release(5000)
    assert window.acquire(600, timeout=0) and not window.acquire(600, timeout=0)


def test_the_window_grows_against_a_distant_api(run_insider, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.15)  # every answer 150 ms away
    run = run_insider(users(6000), max_records_per_request=20)  # 300 requests
    assert run.code == 0, run.err
    peak = sandbox.state.peak_concurrent
    print(f"\n150 ms away: {peak} requests in flight at most; {run.summary['seconds']:.1f}s")
    assert peak >= 16, f"the window stayed at {peak}"  # a fixed window of 4 would take ~11 s


def test_the_window_settles_under_a_quota_without_storms(run_insider, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.02, max_per_second=60)
    run = run_insider(
        users(5000), max_records_per_request=10, backoff_base_seconds=0.5, backoff_max_seconds=60
    )
    assert run.code == 0, run.err
    log = sandbox.requests
    statuses = Counter(entry["status"] for entry in log)
    # Steady state: after the first three seconds, in which the limiter finds the quota.
    settled = Counter(e["status"] for e in log if e["at"] > log[0]["at"] + 3)
    share = settled[429] / sum(settled.values())
    print(
        f"\nunder a quota of 60/s: {statuses[429]} of {sum(statuses.values())} answered 429; "
        f"after 3 s {settled[429]} of {sum(settled.values())} ({share:.1%})"
    )
    assert share <= 0.05, settled
    assert len(sandbox.profiles()) == 5000


def test_a_sandbox_port_in_use_is_a_clear_error(sandbox, cli) -> None:
    result = cli("insider-sandbox", "--port", str(sandbox.port))
    assert result.code == 2
    assert f"cannot listen on 127.0.0.1:{sandbox.port}" in result.err
    assert "internal error" not in result.err
