"""The adbc input against a real PostgreSQL server (started here, on loopback) and SQLite.

The server is PostgreSQL from the system packages (``.ci/run`` installs it when missing):
initdb and pg_ctl in a temporary folder, on a free port, trust authentication for the test
user, stopped at the end. As root, the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root).
"""

from __future__ import annotations

import datetime as dt
import decimal
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from helpers import API_KEY, PARTNER

import arrowbulk
from arrowbulk.testing import collect


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    # Not under pytest's own folder: the postgres user must be able to reach it.
    folder = Path(tempfile.mkdtemp(prefix="arrowbulk-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stdout}{done.stderr}")

    run(initdb, "-D", str(data), "-U", "arrowbulk", "--auth=trust", "--encoding=UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql://arrowbulk@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def sql(uri: str, *statements: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        connection.commit()


TYPES = """
CREATE TABLE typed (
    id bigint, small int, price numeric(10, 2), ratio numeric, name text, active boolean,
    born date, seen timestamp, seen_tz timestamptz, tags text[], scores int[], extra jsonb
);
INSERT INTO typed VALUES
 (1, 7, 19.90, 0.333333333333333333333333333333, 'Ayşe', true, '1990-05-01',
  '2024-01-02 10:11:12', '2024-01-02 10:11:12+03', ARRAY['a','b'], ARRAY[1,2], '{"k": [1, 2]}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_postgresql_types_arrive_exactly(postgres: str, monkeypatch) -> None:
    sql(postgres, "DROP TABLE IF EXISTS typed", *[s for s in TYPES.split(";") if s.strip()])
    monkeypatch.setenv("PG_URI", postgres)
    table = collect(
        {
            "type": "adbc",
            "driver": "postgresql",
            "uri": postgres,
            "query": "SELECT * FROM typed ORDER BY id",
        }
    )
    types = {f.name: f.type for f in table.schema}
    assert types["price"] == pa.decimal128(10, 2)  # numeric(p, s): exact decimals
    assert types["ratio"] == pa.string()  # unconstrained numeric: every digit, as text
    assert types["seen_tz"] == pa.timestamp("us", "UTC")
    assert types["tags"] == pa.list_(pa.string())
    first = table.to_pylist()[0]
    assert first["price"] == decimal.Decimal("19.90")
    assert first["ratio"] == "0.333333333333333333333333333333"
    assert first["name"] == "Ayşe" and first["active"] is True
    assert first["born"] == dt.date(1990, 5, 1)
    assert first["seen_tz"] == dt.datetime(2024, 1, 2, 7, 11, 12, tzinfo=dt.UTC)
    assert first["tags"] == ["a", "b"] and first["scores"] == [1, 2]
    assert json.loads(first["extra"]) == {"k": [1, 2]}
    assert table.to_pylist()[1]["price"] is None


def test_jsonb_goes_to_files_as_json_and_is_refused_by_insider(
    postgres: str, tmp_path: Path, cli, sandbox, monkeypatch
) -> None:
    sql(postgres, "DROP TABLE IF EXISTS typed", *[s for s in TYPES.split(";") if s.strip()])
    monkeypatch.setenv("PG_URI", postgres)
    source = {
        "type": "adbc",
        "driver": "postgresql",
        "uri": "${PG_URI}",
        "query": "SELECT id, extra FROM typed ORDER BY id",
    }
    (tmp_path / "files.yml").write_text(
        yaml.safe_dump({"in": source, "out": {"type": "file", "path": "out.jsonl"}})
    )
    assert cli("run", tmp_path / "files.yml", "--no-progress").code == 0
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert json.loads(lines[0]["extra"]) == {"k": [1, 2]}

    source["query"] = "SELECT 'u' || id AS uuid, extra FROM typed"
    out = {"type": "insider", "api_key": API_KEY, "partner_name": PARTNER, "endpoint": sandbox.url}
    (tmp_path / "insider.yml").write_text(yaml.safe_dump({"in": source, "out": out}))
    result = cli("run", tmp_path / "insider.yml", "--no-progress")
    assert result.code == 2
    assert "extra" in result.err and "JSON" in result.err
    assert postgres not in result.err + result.out  # the connection string is a secret


def test_incremental_users_and_events_from_postgresql(
    postgres: str, tmp_path: Path, sandbox
) -> None:
    sql(
        postgres,
        "DROP TABLE IF EXISTS events",
        "CREATE TABLE events (user_id text, event_name text, at timestamptz, event_id bigint)",
        "INSERT INTO events SELECT 'u' || (i % 30), 'page_view', now() - interval '1 hour' + i * interval '1 second', i FROM generate_series(1, 500) AS i",
    )
    config = {
        "in": {
            "type": "adbc",
            "driver": "postgresql",
            "uri": postgres,
            "query": "SELECT user_id AS uuid, event_name, at AS timestamp, event_id FROM events",
            "incremental": {"columns": ["timestamp", "event_id"]},
        },
        "filters": [{"type": "columns", "drop": ["event_id"]}],
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": sandbox.url,
            "export_mode": "USER_EVENTS",
        },
    }
    diff = tmp_path / "diff.yml"
    assert arrowbulk.run(config, config_diff=diff).accepted == 500
    sql(
        postgres,
        "INSERT INTO events SELECT 'u1', 'page_view', now() + i * interval '1 second', 1000 + i FROM generate_series(1, 40) AS i",
    )
    second = arrowbulk.run(config, config_diff=diff)
    assert (second.rows_read, second.accepted) == (40, 40)
    events = [
        e for r in sandbox.requests if "body" in r for u in r["body"]["users"] for e in u["events"]
    ]
    assert len(events) == 540 and len({e["timestamp"] for e in events}) == 540


def test_sqlite_and_clear_errors(tmp_path: Path, postgres: str) -> None:
    import adbc_driver_sqlite.dbapi as sqlite

    database = tmp_path / "crm.sqlite"
    with sqlite.connect(str(database)) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE users (id INTEGER, email TEXT)")
        cursor.execute("INSERT INTO users VALUES (1, 'a@example.com'), (2, 'b@example.com')")
        connection.commit()
    table = collect(
        {"type": "adbc", "driver": "sqlite", "uri": str(database), "query": "SELECT * FROM users"}
    )
    assert table.to_pylist() == [
        {"id": 1, "email": "a@example.com"},
        {"id": 2, "email": "b@example.com"},
    ]

    with pytest.raises(
        arrowbulk.ConfigError, match=r"in\.query: the database refused it"
    ) as refused:
        collect(
            {
                "type": "adbc",
                "driver": "postgresql",
                "uri": postgres,
                "query": "SELECT * FROM nowhere",
            }
        )
    assert postgres not in str(refused.value)  # the connection string is never in a message
    secret_uri = postgres.replace("arrowbulk@", "arrowbulk:s3cret-pw@").replace(
        postgres.rsplit(":", 1)[1].split("/")[0], "1"
    )
    with pytest.raises(arrowbulk.ConfigError, match=r"in\.uri: cannot connect") as failed:
        collect({"type": "adbc", "driver": "postgresql", "uri": secret_uri, "query": "SELECT 1"})
    assert "s3cret-pw" not in str(failed.value)


def _partitioned(postgres: str, column: str = "id", **extra: Any) -> dict[str, Any]:
    return {
        "type": "adbc",
        "driver": "postgresql",
        "uri": postgres,
        "query": "SELECT 'u' || coalesce(id, -1) AS uuid, id, name, seen FROM people",
        "batch_size": 64,
        "partition_by": {"column": column, "parts": 4},
        **extra,
    }


def _people(postgres: str) -> None:
    sql(
        postgres,
        "DROP TABLE IF EXISTS people",
        "CREATE TABLE people (id bigint, name text, seen timestamptz)",
        "INSERT INTO people SELECT i, 'Name ' || i, timestamptz '2026-01-01' + i * interval '1 hour'"
        " FROM generate_series(1, 1000) AS i",
        "INSERT INTO people VALUES (NULL, 'no id', NULL)",
    )


@pytest.mark.parametrize("column", ["id", "seen"])
def test_partition_by_reads_ranges_of_one_snapshot_the_same_twice(
    postgres: str, column: str
) -> None:
    from arrowbulk import JobError
    from arrowbulk.plugins.adbc.input import AdbcInput
    from arrowbulk.spi import RunContext

    _people(postgres)
    source = AdbcInput(_partitioned(postgres, column), RunContext("r", Path.cwd()))
    assert source.replayable and source.task_count() == 4  # the snapshot is exported here
    assert source.describe_task(3).startswith(f'the postgresql query, part 4 of 4 ("{column}" >= ')
    # A row written after the job's snapshot is in no task; the tasks read it the same twice.
    sql(
        postgres,
        "INSERT INTO people VALUES (5000, 'late', now())",
        "DELETE FROM people WHERE id = 7",
    )
    parts = [pa.Table.from_batches(list(source.read(i)), source.schema()) for i in range(4)]
    again = [pa.Table.from_batches(list(source.read(i)), source.schema()) for i in range(4)]
    assert all(a.equals(b) for a, b in zip(parts, again, strict=True))
    names = [n for part in parts for n in part.column("name").to_pylist()]
    assert sorted(names) == sorted([f"Name {i}" for i in range(1, 1001)] + ["no id"])
    assert all(len(part) >= 200 for part in parts)  # equal widths of the column's range
    # The job's end releases the snapshot: its transaction is gone, no task can import it.
    source.close()
    with pytest.raises(JobError, match=r"in\.partition_by: task 1 cannot read the job's snapshot"):
        list(source.read(0))


def test_partition_by_config_errors_name_the_key(postgres: str, tmp_path: Path) -> None:
    from arrowbulk import ConfigError
    from arrowbulk.plugins.adbc.input import AdbcInput
    from arrowbulk.spi import RunContext

    _people(postgres)
    context = RunContext("r", tmp_path)
    cases = [
        (_partitioned(postgres, "nope"), r"in\.partition_by\.column: 'nope' is not a column"),
        (_partitioned(postgres, "name"), r"in\.partition_by\.column: name is string; ranges need"),
        (
            {**_partitioned(postgres), "driver": "sqlite", "uri": str(tmp_path / "x.db")},
            r"in\.partition_by: postgresql only",
        ),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message):
            AdbcInput(config, context).task_count()


def test_partition_by_with_the_record_check_on_a_cluster_and_no_resume(
    postgres: str, tmp_path: Path, sandbox
) -> None:
    pytest.importorskip("distributed")
    _people(postgres)
    config = {
        "in": _partitioned(postgres),
        "exec": {"type": "dask", "workers": 2},
        "filters": [{"type": "columns", "drop": ["id", "seen"]}],
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": sandbox.url,
            "reject_file": str(tmp_path / "rejects.jsonl"),
        },
    }
    # Defaults: every record checked (the client reads each range), then the workers read
    # their ranges again, on the same snapshot.
    summary = arrowbulk.run(config)
    assert (summary.tasks, summary.rows_read, summary.accepted) == (4, 1001, 1001)
    uuids = {p["identifiers"]["uuid"] for p in sandbox.profiles()}
    assert uuids == {f"u{i}" for i in range(1, 1001)} | {"u-1"}
    with pytest.raises(
        arrowbulk.ConfigError, match=r"--resume: in\.partition_by reads ranges of the live database"
    ):
        arrowbulk.run(config, resume=tmp_path / "state.json")
    # Nothing of the job is left open on the server.
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(postgres) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        )
        assert cursor.fetchone() == (0,)
