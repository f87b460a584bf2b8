"""``exec: {type: dask}`` on a LocalCluster of 2 worker processes, against the sandbox.

Each job starts its own cluster (about two seconds); the tasks run in the workers, the job
level (record check, reject file, summary) here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import API_KEY, PARTNER

pytest.importorskip("distributed")

CLUSTER = {"type": "dask", "workers": 2}


def job(tmp_path: Path, sandbox: Any, table: pa.Table, group_rows: int, **out: Any) -> Path:
    """A job reading ``table`` (row groups of ``group_rows``: one task each) on the cluster."""
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=group_rows)
    config = {
        "in": {"type": "file", "path": "data.parquet"},
        "exec": CLUSTER,
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": sandbox.url,
            "reject_file": "rejects.jsonl",
            "skip_invalid_records": True,
            **out,
        },
    }
    path = tmp_path / "job.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_run(path: Path, *options: object) -> subprocess.Popen[bytes]:
    """``arrowbulk run PATH`` in a process of its own (to be signalled or killed)."""
    command = "from arrowbulk.cli import entry; entry()"
    return subprocess.Popen(
        [sys.executable, "-c", command, "run", str(path), "--no-progress", *map(str, options)],
        cwd=path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(cli: Any, path: Path) -> tuple[int, dict[str, Any], str]:
    summary = path.with_name("summary.json")
    result = cli("run", path, "--no-progress", "--summary-json", summary)
    return result.code, json.loads(summary.read_text()), result.err


def users(count: int, bad_every: int = 0) -> pa.Table:
    emails = [
        "not-an-email" if bad_every and i % bad_every == 0 else f"user{i}@example.com"
        for i in range(count)
    ]
    return pa.table(
        {
            "uuid": [f"u{i}" for i in range(count)],
            "email": emails,
            "name": [f"Name {i}" for i in range(count)],
        }
    )


def test_user_attributes_on_two_workers_account_for_every_row(tmp_path, sandbox, cli) -> None:
    code, summary, err = run(cli, job(tmp_path, sandbox, users(1000, bad_every=150), 100))
    assert code == 0, err
    rows = summary["rows"]
    assert (rows["read"], rows["accepted"], rows["unsent"]) == (1000, 993, 0)
    assert rows["rejected"] == 7 and summary["rejected_by_reason"] == {"email: pattern": 7}
    assert (summary["tasks"], summary["tasks_committed"]) == (10, 10)
    # What arrived, value by value, against the input as pyarrow reads it.
    expected = {
        row["uuid"]: (row["email"], row["name"])
        for row in pq.read_table(tmp_path / "data.parquet").to_pylist()
        if row["email"] != "not-an-email"
    }
    arrived = {
        p["identifiers"]["uuid"]: (p["identifiers"]["email"], p["attributes"]["name"])
        for p in sandbox.profiles()
    }
    assert arrived == expected
    # The workers' rejects, merged into the one reject file, in task order; no parts left.
    lines = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(x["task"], x["row"]) for x in lines] == [
        (i // 100, i % 100) for i in range(0, 1000, 150)
    ]
    assert not list(tmp_path.glob("rejects.jsonl.task-*"))
    assert API_KEY not in (tmp_path / "rejects.jsonl").read_text() + err


def test_user_events_and_audiences_on_two_workers(tmp_path, sandbox, cli) -> None:
    events = pa.table(
        {
            "uuid": [f"u{i % 50}" for i in range(600)],
            "event_name": ["page_view"] * 600,
            "timestamp": pa.array([int(time.time()) - i for i in range(600)], pa.timestamp("s")),
            "event_group_id": [f"g{i}" for i in range(600)],
        }
    )
    code, summary, err = run(cli, job(tmp_path, sandbox, events, 100, export_mode="USER_EVENTS"))
    assert code == 0, err
    assert summary["rows"]["accepted"] == 600
    assert sum(len(p["events"]) for p in sandbox.profiles()) == 600, sandbox.requests[:1]

    audiences = pa.table(
        {
            "uuid": [f"u{i}" for i in range(50)],
            "td_audience_id": pa.array([[1, 2]] * 50, pa.list_(pa.int64())),
            "td_audience_name": ["['A', 'B']"] * 50,
        }
    )
    audience_job = job(tmp_path, sandbox, audiences, 10, export_mode="USER_AUDIENCES")
    code, summary, err = run(cli, audience_job)
    assert code == 0, err
    assert summary["rows"]["accepted"] == 50
    assert all(p["attributes"]["custom"]["td_audience_id"] == [1, 2] for p in sandbox.profiles()), (
        sandbox.profiles()[:1]
    )


def test_every_attribute_operation_on_two_workers(tmp_path, sandbox, cli) -> None:
    # Tasks of 50 rows; per-row operations (identity delete, anonymize) under fast limits.
    fast = {"rate_limits": {"identity_delete": 25000, "anonymize": 25000}}
    seeded = users(200).append_column("tier", pa.array(["gold"] * 200))
    code, summary, err = run(cli, job(tmp_path, sandbox, seeded, 50))
    assert code == 0 and summary["rows"]["accepted"] == 200, err

    def operate(table: pa.Table, operation: str) -> dict[str, Any]:
        code, summary, err = run(
            cli, job(tmp_path, sandbox, table, 50, attribute_operation=operation, **fast)
        )
        assert code == 0, err
        assert summary["tasks"] == summary["tasks_committed"] == -(-len(table) // 50)
        assert summary["rows"] == {
            "read": len(table),
            "accepted": len(table),
            "rejected": 0,
            "unsent": 0,
        }
        return {
            p["identifiers"].get("uuid", p["attributes"].get("name")): p for p in sandbox.profiles()
        }

    tags = pa.table({"uuid": [f"u{i}" for i in range(200)], "tags": ["['x', 'y']"] * 200})
    profiles = operate(tags, "REPLACE_ATTRIBUTES")
    assert all(profiles[f"u{i}"]["attributes"]["custom"]["tags"] == ["x", "y"] for i in range(200))

    names = pa.table({"uuid": [f"u{i}" for i in range(100)], "name": ["x"] * 100})
    profiles = operate(names, "DELETE_ATTRIBUTES")
    assert [("name" in profiles[f"u{i}"]["attributes"]) for i in (0, 99, 100, 199)] == [
        False,
        False,
        True,
        True,
    ]

    emails = pa.table({"email": [f"user{i}@example.com" for i in range(40)]})
    profiles = operate(emails, "DELETE_IDENTIFIERS")
    assert all("email" not in profiles[f"u{i}"]["identifiers"] for i in range(40))
    assert profiles["u40"]["identifiers"]["email"] == "user40@example.com"
    assert sum(r["path"] == "/api/user/v1/identity" for r in sandbox.requests) == 40

    forgotten = pa.table({"uuid": [f"u{i}" for i in range(150, 200)]})
    profiles = operate(forgotten, "DELETE_PII")
    assert sum(r["path"] == "/api/user/v1/anonymize" for r in sandbox.requests) == 50
    assert len([p for p in sandbox.profiles() if not p["identifiers"]]) == 50
    assert "u149" in profiles and "u150" not in profiles


def test_a_query_runs_once_here_and_its_spool_parts_on_the_workers(
    tmp_path, sandbox, cli, monkeypatch
) -> None:
    from arrowbulk import spool

    monkeypatch.setattr(spool, "SPOOL_PART_ROWS", 100)  # 1,000 rows: 10 tasks
    path = job(tmp_path, sandbox, users(1000, bad_every=300), 1000)
    config = yaml.safe_load(path.read_text())
    config["in"] = {"type": "sql", "query": "SELECT * FROM 'data.parquet' ORDER BY uuid"}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, summary, err = run(cli, path)
    assert code == 0, err
    assert (summary["tasks"], summary["tasks_committed"]) == (10, 10)
    assert summary["rows"] == {"read": 1000, "accepted": 996, "rejected": 4, "unsent": 0}
    sent = {p["identifiers"]["uuid"] for p in sandbox.profiles()}
    assert sent == {f"u{i}" for i in range(1000) if i % 300}


def test_a_partitioned_query_runs_on_the_workers(tmp_path, sandbox, cli) -> None:
    path = job(tmp_path, sandbox, users(1000), 1000)
    config = yaml.safe_load(path.read_text())
    config["in"] = {
        "type": "sql",
        "query": "SELECT * FROM 'data.parquet'",
        "partition_by": {"column": "uuid", "parts": 6},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, summary, err = run(cli, path)
    assert code == 0, err
    assert (summary["tasks"], summary["tasks_committed"]) == (6, 6)
    assert summary["rows"] == {"read": 1000, "accepted": 1000, "rejected": 0, "unsent": 0}
    assert {p["identifiers"]["uuid"] for p in sandbox.profiles()} == {f"u{i}" for i in range(1000)}


def test_a_query_split_by_row_groups_runs_on_the_workers(tmp_path, sandbox, cli) -> None:
    # Row groups of 100 users, tasks of about 300: 4 tasks, each worker scanning its own.
    path = job(tmp_path, sandbox, users(1000, bad_every=250), 100)
    config = yaml.safe_load(path.read_text())
    config["in"] = {
        "type": "sql",
        "tables": {"people": "data.parquet"},
        "query": "SELECT uuid, lower(email) AS email, name FROM people WHERE uuid <> 'u999'",
        "split": {"table": "people", "rows_per_task": 300},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, summary, err = run(cli, path)
    assert code == 0, err
    # 4 tasks, not the spool's one part of 999 rows: each worker ran the query for its part.
    assert (summary["tasks"], summary["tasks_committed"]) == (4, 4)
    assert summary["rows"] == {"read": 999, "accepted": 995, "rejected": 4, "unsent": 0}
    sent = {p["identifiers"]["uuid"] for p in sandbox.profiles()}
    assert sent == {f"u{i}" for i in range(999) if i % 250}


def test_the_rate_limit_holds_for_the_whole_cluster(tmp_path, sandbox, cli) -> None:
    # 120 requests a minute (2 a second) for the job: 12 tasks of one request each on 2
    # workers. Each task alone may send at 2/s; together they must too.
    path = job(tmp_path, sandbox, users(120), 10, rate_limits={"upsert": 120})
    code, summary, err = run(cli, path)
    assert code == 0, err
    assert summary["rows"]["accepted"] == 120
    times = sorted(request["at"] for request in sandbox.requests)
    assert len(times) == 12
    # Over the whole run at most the rate, plus one bucket per running task (2) of slack.
    span = times[-1] - times[0]
    assert len(times) <= 2 * span + 2 + 1, (span, times)


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, sandbox, cli) -> None:
    # 4 tasks of 500 users, 5 requests each, one at a time, 0.2 s an answer: ~1 s a task.
    sandbox.set_faults(delay_seconds=0.2)
    path = job(
        tmp_path,
        sandbox,
        users(2000),
        500,
        max_records_per_request=100,
        max_requests_in_flight=1,
    )
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 30
        # Six requests in: each of the two running tasks has had answers (settled rows).
        while time.monotonic() < deadline and len(sandbox.requests) < 6:
            time.sleep(0.02)
        workers = worker_processes()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    code, summary, err = run(cli, path)
    killer.join()
    assert killed, "no worker process was found to kill"
    assert code == 0, err
    rows = summary["rows"]
    assert (rows["read"], rows["accepted"], rows["rejected"], rows["unsent"]) == (2000, 2000, 0, 0)
    assert {p["identifiers"]["uuid"] for p in sandbox.profiles()} == {f"u{i}" for i in range(2000)}
    # The retry skipped what the dead attempt had settled: at most its window (one request of
    # 100 users) went twice.
    sent = sum(len(request["body"].get("users", [])) for request in sandbox.requests)
    assert 2000 <= sent <= 2100, sent
    assert summary["details"].get("rows_settled_before_a_retry", 0) > 0, (
        summary["details"],
        [
            (round(r["at"] % 100, 2), r["body"]["users"][0]["identifiers"]["uuid"])
            for r in sandbox.requests
        ],
        killed,
    )


def worker_processes() -> list[int]:
    """This process's children started by multiprocessing (the cluster's workers)."""
    return processes_of(os.getpid())


def test_ctrl_c_stops_the_cluster_and_counts_the_rest_unsent(tmp_path, sandbox) -> None:
    sandbox.set_faults(delay_seconds=0.3)
    path = job(
        tmp_path, sandbox, users(2000), 250, max_records_per_request=50, max_requests_in_flight=1
    )
    client = start_run(path, "--summary-json", tmp_path / "summary.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(sandbox.requests) < 4:
        time.sleep(0.02)
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=30) == 130
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["rows"]
    assert summary["status"] == "interrupted"
    sent = sum(len(request["body"]["users"]) for request in sandbox.requests)
    # Every row read is accounted for; what Insider acknowledged is accepted, nothing more.
    assert rows["read"] == rows["accepted"] + rows["unsent"] and rows["unsent"] > 0
    assert rows["accepted"] <= sent
    # Tasks still queued when the job stopped read nothing.
    assert rows["read"] < 2000


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ({"exec": {"type": "dask"}}, "exec", "either address"),
        (
            {"exec": {"type": "dask", "workers": 2, "address": "tcp://127.0.0.1:1"}},
            "exec",
            "not both",
        ),
        ({"exec": {"type": "dask", "workers": 0}}, "exec.workers", "minimum"),
        ({"exec": {"type": "nope"}}, "exec.type", "no executor named 'nope'"),
    ],
)
def test_wrong_executor_configs_name_the_key(tmp_path, cli, extra, where, message) -> None:
    pq.write_table(users(3), tmp_path / "data.parquet")
    config = {"in": {"type": "file", "path": "data.parquet"}, "out": {"type": "null"}, **extra}
    (tmp_path / "job.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = cli("run", tmp_path / "job.yml", "--no-progress")
    assert result.code == 2, result.err
    assert where in result.err and message in result.err
    assert "Traceback" not in result.err


def test_what_the_cluster_cannot_do_yet_is_refused_by_name(tmp_path, sandbox, cli) -> None:
    path = job(tmp_path, sandbox, users(3), 10, only_changed=True)
    result = cli("run", path, "--no-progress")
    assert result.code != 0 and "out.only_changed: not with exec.type dask" in result.err


def test_incremental_runs_on_the_cluster_send_only_new_rows(tmp_path, sandbox, cli) -> None:
    first = users(1000).append_column("n", pa.array(range(1000), pa.int64()))
    path = job(tmp_path, sandbox, first, 100)
    config = yaml.safe_load(path.read_text())
    config["in"] = {"type": "file", "path": "data/*.parquet", "incremental": {"columns": ["n"]}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data.parquet").rename(tmp_path / "data" / "1.parquet")
    diff = tmp_path / "diff.yml"
    assert cli("run", path, "--no-progress", "-c", diff).code == 0
    assert yaml.safe_load(diff.read_text())["in"]["incremental"]["last_record"] == [999]
    more = pa.table(
        {
            "uuid": [f"u{i}" for i in range(1000, 1300)],
            "email": [f"user{i}@example.com" for i in range(1000, 1300)],
            "name": ["Grace"] * 300,
            "n": pa.array(range(1000, 1300), pa.int64()),
        }
    )
    pq.write_table(more, tmp_path / "data" / "2.parquet", row_group_size=100)
    before = len(sandbox.requests)
    result = cli("run", path, "--no-progress", "-c", diff, "--summary-json", tmp_path / "s2.json")
    assert result.code == 0, result.err
    second = json.loads((tmp_path / "s2.json").read_text())
    assert second["rows"]["read"] == 300 and second["rows"]["accepted"] == 300
    new = [u for r in sandbox.requests[before:] for u in r["body"]["users"]]
    assert sorted(u["identifiers"]["uuid"] for u in new) == sorted(
        f"u{i}" for i in range(1000, 1300)
    )
    assert yaml.safe_load(diff.read_text())["in"]["incremental"]["last_record"] == [1299]


def test_resume_after_the_client_and_its_workers_are_killed(tmp_path, sandbox, cli) -> None:
    sandbox.set_faults(delay_seconds=0.2)
    path = job(
        tmp_path, sandbox, users(2000), 500, max_records_per_request=100, max_requests_in_flight=1
    )
    state = tmp_path / "state.json"
    client = start_run(path, "--resume", state)
    try:
        # Killed once the state records settled rows (the client writes it every 0.25 s:
        # a request count alone raced it on a loaded machine).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _settled_in(state):
            time.sleep(0.02)
        workers = processes_of(client.pid)
        for pid in [client.pid, *workers]:  # the client's machine goes down, workers too
            os.kill(pid, signal.SIGKILL)
    finally:
        client.wait(timeout=30)
    assert len(sandbox.requests) < 20, "the first run ended before it was killed"
    settled = json.loads(state.read_text())["tasks"]
    assert any(task["settled"] for task in settled.values()), settled
    result = cli(
        "run", path, "--no-progress", "--resume", state, "--summary-json", tmp_path / "summary.json"
    )
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {p["identifiers"]["uuid"] for p in sandbox.profiles()} == {f"u{i}" for i in range(2000)}
    resume = summary["details"]["resume"]
    assert resume["skipped_rows"] > 0, resume
    # This run's rows and the earlier run's settled rows make up the input, nothing counted twice.
    assert summary["rows"]["read"] + resume["skipped_rows"] == 2000, (summary["rows"], resume)
    assert summary["rows"]["unsent"] == 0


def _settled_in(state: Path) -> bool:
    try:
        tasks = json.loads(state.read_text())["tasks"]
    except (OSError, ValueError, KeyError):
        return False  # not written yet
    return any(task["settled"] for task in tasks.values())


def processes_of(parent: int) -> list[int]:
    """The children of process ``parent`` started by multiprocessing."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)
