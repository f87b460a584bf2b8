"""Daily runs: incremental inputs with Embulk's config diff, and the Python API.

Each test runs the same job several times against the sandbox, changing the source between
runs, and checks what arrived: every new or changed row exactly once, nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import API_KEY, PARTNER

import arrowbulk
from arrowbulk import ConfigError, JobError

START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)


def users(ids: range, stamp: dt.datetime) -> pa.Table:
    return pa.table(
        {
            "uuid": [f"u{i}" for i in ids],
            "name": [f"n{i}" for i in ids],
            "id": pa.array(list(ids), pa.int64()),
            "updated_at": pa.array([stamp] * len(ids), pa.timestamp("s", tz="UTC")),
        }
    )


def job(tmp_path: Path, url: str, source: dict[str, Any], **out: Any) -> dict[str, Any]:
    return {
        "in": source,
        "filters": [{"type": "columns", "drop": ["id", "updated_at"]}],
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": url,
            "reject_file": str(tmp_path / "rejects.jsonl"),
            **out,
        },
    }


def sent_uuids(sandbox) -> Counter[str]:
    return Counter(
        u["identifiers"]["uuid"]
        for r in sandbox.requests
        if "body" in r
        for u in r["body"]["users"]
    )


def test_users_over_three_runs_each_version_sent_once(sandbox, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = {
        "type": "sql",
        "query": "SELECT * FROM 'users.parquet'",
        "incremental": {"columns": ["updated_at", "id"]},
    }
    config = job(tmp_path, sandbox.url, source)
    diff = tmp_path / "users.diff.yml"

    pq.write_table(users(range(100), START), "users.parquet")
    first = arrowbulk.run(config, config_diff=diff)
    assert first.accepted == 100 and sent_uuids(sandbox) == Counter(f"u{i}" for i in range(100))
    assert yaml.safe_load(diff.read_text())["in"]["incremental"]["last_record"] == [
        START.isoformat(),
        99,
    ]

    # Between runs: 10 users change, 5 arrive; one of them ties on updated_at with the last
    # record of run 1 but has a greater id (ties are broken by the next column).
    later = START + dt.timedelta(hours=1)
    changed = pa.concat_tables(
        [users(range(10, 100), START), users(range(10), later), users(range(100, 105), later)]
    )
    tie = users(range(105, 106), START)
    pq.write_table(pa.concat_tables([changed, tie]), "users.parquet")
    before = sent_uuids(sandbox)
    second = arrowbulk.run(config, config_diff=diff)
    new = sent_uuids(sandbox) - before
    assert second.accepted == 16
    assert new == Counter([*(f"u{i}" for i in range(10)), *(f"u{i}" for i in range(100, 106))])

    before = sent_uuids(sandbox)
    third = arrowbulk.run(config, config_diff=diff)  # nothing changed
    assert (third.rows_read, sent_uuids(sandbox) - before) == (0, Counter())
    # A run that read nothing keeps the last record it had.
    assert yaml.safe_load(diff.read_text())["in"]["incremental"]["last_record"][1] == 104


def events(first: int, count: int, start: dt.datetime) -> pa.Table:
    ids = range(first, first + count)
    return pa.table(
        {
            "uuid": [f"u{i % 50}" for i in ids],
            "event_name": ["page_view"] * count,
            "timestamp": pa.array(
                [start + dt.timedelta(seconds=i) for i in ids], pa.timestamp("ms", tz="UTC")
            ),
            "event_id": pa.array(list(ids), pa.int64()),
        }
    )


def sent_events(sandbox) -> list[str]:
    return [
        e["timestamp"]
        for r in sandbox.requests
        if "body" in r
        for u in r["body"]["users"]
        for e in u.get("events", [])
    ]


def test_events_appended_between_runs_arrive_exactly_once(cli, sandbox, tmp_path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    pq.write_table(events(0, 3000, START), folder / "day1.parquet", row_group_size=500)
    config = job(
        tmp_path,
        sandbox.url,
        {
            "type": "file",
            "path": "events/*.parquet",
            "incremental": {"columns": ["timestamp", "event_id"]},
        },
        export_mode="USER_EVENTS",
    )
    config["filters"] = [{"type": "columns", "drop": ["event_id"]}]
    path = tmp_path / "events.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    diff = tmp_path / "events.diff.yml"

    assert cli("run", path, "-c", diff, "--no-progress").code == 0
    assert len(sent_events(sandbox)) == 3000

    pq.write_table(events(3000, 1000, START), folder / "day2.parquet", row_group_size=500)
    result = cli("run", path, "-c", diff, "--no-progress")
    assert result.code == 0, result.err
    stamps = sent_events(sandbox)
    assert len(stamps) == 4000 and len(set(stamps)) == 4000  # the 1,000 new ones, once each


def test_a_failed_run_leaves_the_diff_and_the_next_run_sends_the_rest(sandbox, tmp_path) -> None:
    pq.write_table(users(range(20), START), tmp_path / "users.parquet")
    source = {
        "type": "file",
        "path": str(tmp_path / "users.parquet"),
        "incremental": {"columns": ["updated_at", "id"]},
    }
    diff = tmp_path / "diff.yml"
    wrong_key = job(tmp_path, sandbox.url, source)
    wrong_key["out"]["api_key"] = "not-the-key-1234"
    with pytest.raises(JobError) as failed:
        arrowbulk.run(wrong_key, config_diff=diff)
    assert failed.value.summary.status == "failed"  # type: ignore[attr-defined]
    assert not diff.exists()  # a failed run writes no diff
    summary = arrowbulk.run(job(tmp_path, sandbox.url, source), config_diff=diff)
    assert summary.accepted == 20 and diff.exists()


def test_a_null_in_an_incremental_column_stops_the_job(sandbox, tmp_path) -> None:
    table = users(range(3), START).set_column(
        3, "updated_at", pa.array([START, None, START], pa.timestamp("s", tz="UTC"))
    )
    pq.write_table(table, tmp_path / "users.parquet")
    source = {
        "type": "file",
        "path": str(tmp_path / "users.parquet"),
        "incremental": {"columns": ["updated_at"]},
    }
    with pytest.raises(JobError, match="updated_at is null in 1 row"):
        arrowbulk.run(job(tmp_path, sandbox.url, source))


def test_config_errors_name_the_key(sandbox, tmp_path) -> None:
    pq.write_table(users(range(3), START), tmp_path / "users.parquet")
    source = {
        "type": "file",
        "path": str(tmp_path / "users.parquet"),
        "incremental": {"columns": ["updated_at", "id"], "last_record": ["x"]},
    }
    with pytest.raises(ConfigError, match=r"in\.incremental\.last_record: 1 value\(s\) for 2"):
        arrowbulk.run(job(tmp_path, sandbox.url, source))
    source["incremental"] = {"columns": ["nope"]}
    with pytest.raises(arrowbulk.SchemaError, match="nope is not a column"):
        arrowbulk.run(job(tmp_path, sandbox.url, source))
    bad = tmp_path / "bad.diff.yml"
    bad.write_text("filters: []\n")
    with pytest.raises(ConfigError, match="must hold only 'in:' and 'out:'"):
        arrowbulk.run(job(tmp_path, sandbox.url, source), config_diff=bad)


def test_parquet_row_groups_before_the_last_record_are_not_read(tmp_path) -> None:
    from arrowbulk.plugins.file.input import FileInput
    from arrowbulk.spi import RunContext

    pq.write_table(users(range(40), START), tmp_path / "u.parquet", row_group_size=10)
    table = pq.read_table(tmp_path / "u.parquet")
    stamps = [START + dt.timedelta(minutes=i // 10) for i in range(40)]  # one minute per group
    table = table.set_column(3, "updated_at", pa.array(stamps, pa.timestamp("s", tz="UTC")))
    pq.write_table(table, tmp_path / "u.parquet", row_group_size=10)
    last = (START + dt.timedelta(minutes=2)).isoformat()
    config = {
        "type": "file",
        "path": "u.parquet",
        "format": None,
        "batch_size": 65536,
        "hive_partitioning": False,
        "binary_as_string": True,
        "max_row_group_bytes": 2**30,
        "incremental": {"columns": ["updated_at", "id"], "last_record": [last, 25]},
    }
    plugin = FileInput(
        {k: v for k, v in config.items() if v is not None}, RunContext("t", tmp_path)
    )
    read = [batch.num_rows for task in range(plugin.task_count()) for batch in plugin.read(task)]
    assert read == [10, 10]  # groups 0 and 1 skipped by their statistics; 2 and 3 read


@pytest.mark.parametrize("source", ["file", "sql"])
def test_a_failed_run_resumed_leaves_a_diff_covering_what_it_skipped(
    sandbox, tmp_path, monkeypatch, source
) -> None:
    """Day 1 fails halfway and is resumed; the resume skips what day 1 settled, yet day 2
    reads only the new events: none arrives twice."""
    monkeypatch.chdir(tmp_path)
    pq.write_table(events(0, 400, START), "events.parquet", row_group_size=100)
    read = (
        {"type": "file", "path": "events.parquet"}
        if source == "file"
        else {"type": "sql", "query": "SELECT * FROM 'events.parquet'"}
    )
    config = job(
        tmp_path,
        sandbox.url,
        {**read, "incremental": {"columns": ["timestamp", "event_id"]}},
        export_mode="USER_EVENTS",
        max_records_per_request=50,
        max_requests_in_flight=1,
        max_retries=0,
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.02,
    )
    config["filters"] = [{"type": "columns", "drop": ["event_id"]}]
    config["exec"] = {"max_threads": 1}
    diff = tmp_path / "diff.yml"

    sandbox.set_faults(healthy_requests=3)  # 150 events in, then an outage
    with pytest.raises(JobError):
        arrowbulk.run(config, config_diff=diff, resume="day1.json")
    assert not diff.exists()
    sandbox.set_faults(healthy_requests=None)
    resumed = arrowbulk.run(config, config_diff=diff, resume="day1.json")
    assert resumed.details["resume"]["skipped_rows"] >= 100
    assert len(sent_events(sandbox)) == 400

    pq.write_table(
        pa.concat_tables([events(0, 400, START), events(400, 50, START)]),
        "events.parquet",
        row_group_size=100,
    )
    arrowbulk.run(config, config_diff=diff)
    stamps = sent_events(sandbox)
    assert len(stamps) == 450 and len(set(stamps)) == 450
