"""The sql input runs one read-only SELECT, reading files only below the folders the job names."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture
def users(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), folder / "users.parquet")
    pq.write_table(pa.table({"secret": ["s"]}), tmp_path / "outside.parquet")
    return folder


HOSTILE = [
    "SELECT 1) AS a; ATTACH 'x.duckdb' AS x; COPY (SELECT 1) TO 'written.csv'; SELECT * FROM (SELECT 1",
    "COPY (SELECT 1) TO 'written.csv'",
    "ATTACH 'x.duckdb'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE t AS SELECT 1",
    "SET enable_external_access = true",
    "SELECT 1; SELECT 2",
]


@pytest.mark.parametrize("query", HOSTILE)
@pytest.mark.parametrize("command", ["validate", "run", "preview"])
def test_anything_but_one_select_is_refused_and_writes_nothing(
    users: Path, write_pipeline, cli, query: str, command: str
) -> None:
    job = write_pipeline({"type": "sql", "query": query}, {"type": "null"}, name="job/job.yml")
    result = cli(command, job, *(["--no-progress"] if command == "run" else []))
    assert result.code == 2, result.err
    assert "in.query" in result.err
    assert "internal error" not in result.err
    assert sorted(p.name for p in users.iterdir()) == ["job.yml", "users.parquet"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM '../outside.parquet'",
        "SELECT * FROM read_parquet('{outside}')",
        "SELECT * FROM read_text('/etc/hostname')",
    ],
)
def test_files_outside_the_named_folders_are_not_read(
    users: Path, tmp_path: Path, write_pipeline, cli, query: str
) -> None:
    query = query.format(outside=tmp_path / "outside.parquet")
    job = write_pipeline({"type": "sql", "query": query}, {"type": "null"}, name="job/job.yml")
    result = cli("preview", job)
    assert result.code == 2
    assert "in.query" in result.err and "'s'" not in result.out


def test_allowed_directories_widen_what_the_query_reads(
    users: Path, tmp_path: Path, write_pipeline, cli
) -> None:
    query = f"SELECT * FROM '{tmp_path / 'outside.parquet'}'"
    job = write_pipeline(
        {"type": "sql", "query": query, "allowed_directories": [".."]},
        {"type": "null"},
        name="job/job.yml",
    )
    result = cli("run", job, "--no-progress")
    assert result.code == 0, result.err


def test_with_select_and_the_config_folder_work(users: Path, write_pipeline, cli) -> None:
    query = "WITH u AS (SELECT * FROM 'users.parquet') SELECT id * 2 AS twice FROM u"
    job = write_pipeline({"type": "sql", "query": query}, {"type": "null"}, name="job/job.yml")
    result = cli("run", job, "--no-progress")
    assert result.code == 0, result.err
    assert result.out.split("accepted")[1].split()[0] == "2"


def test_duckdb_errors_are_shown_whole(users: Path, write_pipeline, cli) -> None:
    query = "SELECT nosuch FROM 'users.parquet'"
    job = write_pipeline({"type": "sql", "query": query}, {"type": "null"}, name="job/job.yml")
    result = cli("preview", job)
    assert result.code == 2
    assert "nosuch" in result.err and "id" in result.err.split("nosuch", 1)[1]
