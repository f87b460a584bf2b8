"""Every input format, read through a real pipeline into a real Parquet file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from helpers import sample_table

from arrowbulk.batches import rebatch
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job


def read_all(in_config: dict, base: Path) -> pa.Table:
    pipeline = pipeline_from_mapping({"in": in_config, "out": {"type": "null"}}, base)
    job = Job(pipeline, load_registry())
    batches = [b for i in range(job.input.task_count()) for b in job.input.read(i)]
    return pa.Table.from_batches(batches, schema=job.input.schema())


def copy_through(cli, write_pipeline, in_config: dict, tmp_path: Path) -> pa.Table:
    out = tmp_path / "out" / "copy.parquet"
    job = write_pipeline(in_config, {"type": "file", "path": str(out)}, {"max_threads": 2})
    result = cli("run", job, "--no-progress")
    assert result.code == 0, result.err
    files = sorted((tmp_path / "out").glob("copy*.parquet"))
    return pa.concat_tables(pq.read_table(f) for f in files)


def test_parquet_is_split_into_one_task_per_row_group(tmp_path: Path, parquet_file: Path) -> None:
    pipeline = pipeline_from_mapping(
        {"in": {"type": "file", "path": str(parquet_file)}, "out": {"type": "null"}}, tmp_path
    )
    job = Job(pipeline, load_registry())
    assert job.input.task_count() == 3  # 10 rows, row groups of 4
    assert job.input.describe_task(2) == "data.parquet row group 2"
    assert read_all({"type": "file", "path": str(parquet_file)}, tmp_path).equals(sample_table(10))


def test_parquet_round_trips_through_a_pipeline(
    cli, write_pipeline, tmp_path: Path, parquet_file: Path
) -> None:
    copied = copy_through(cli, write_pipeline, {"type": "file", "path": "data.parquet"}, tmp_path)
    assert copied.sort_by("id").equals(sample_table(10))


@pytest.mark.parametrize("layout", ["file", "stream", "feather"])
def test_arrow_ipc_in_every_layout(tmp_path: Path, layout: str) -> None:
    table = sample_table(7)
    path = tmp_path / f"data.{'feather' if layout == 'feather' else 'arrow'}"
    if layout == "feather":
        feather.write_feather(table, path)
    else:
        with (ipc.new_file if layout == "file" else ipc.new_stream)(
            str(path), table.schema
        ) as writer:
            for batch in table.to_batches(max_chunksize=3):
                writer.write_batch(batch)
    assert read_all({"type": "file", "path": path.name}, tmp_path).equals(table)


def test_csv_with_types_inferred_from_the_first_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name,amount\n1,Ayşe,1.5\n2,,2\n")
    (tmp_path / "b.csv").write_text("id,name,amount\n3,Jürgen,\n")
    table = read_all({"type": "file", "path": "*.csv"}, tmp_path)
    assert table.schema.field("id").type == pa.int64()
    assert table.to_pydict() == {
        "id": [1, 2, 3],
        "name": ["Ayşe", None, "Jürgen"],
        "amount": [1.5, 2.0, None],
    }


def test_csv_strings_only_and_delimiter(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("id;code\n1;007\n")
    table = read_all(
        {"type": "file", "path": "a.tsv", "csv": {"delimiter": ";", "strings_only": True}}, tmp_path
    )
    assert table.to_pydict() == {"id": ["1"], "code": ["007"]}


def test_json_lines(tmp_path: Path) -> None:
    rows = [{"id": i, "name": f"n{i}", "tags": ["a", "b"][: i % 3]} for i in range(5)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_all({"type": "file", "path": "a.jsonl"}, tmp_path).to_pylist() == rows


def test_a_directory_reads_every_file_and_columns_project(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for part in range(3):
        pq.write_table(sample_table(5).slice(0, 5), folder / f"part-{part}.parquet")
    table = read_all({"type": "file", "path": "parts", "columns": ["name", "id"]}, tmp_path)
    assert table.num_rows == 15 and table.column_names == ["name", "id"]


def test_files_with_different_columns_are_refused_by_name(
    cli, write_pipeline, tmp_path: Path
) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"b": [1]}), tmp_path / "2.parquet")
    result = cli(
        "run",
        write_pipeline({"type": "file", "path": "*.parquet"}, {"type": "null"}),
        "--no-progress",
    )
    assert result.code == 2
    assert "2.parquet has columns ['b'], but 1.parquet has ['a']" in result.err
    assert "Traceback" not in result.err


def test_sql_on_a_parquet_file_relative_to_the_config(
    cli, write_pipeline, tmp_path: Path, parquet_file: Path
) -> None:
    in_config = {"type": "sql", "query": "SELECT * FROM 'data.parquet' WHERE id >= 3 ORDER BY id"}
    copied = copy_through(cli, write_pipeline, in_config, tmp_path)
    assert copied.equals(sample_table(10).slice(3))


def test_sql_on_tables_in_a_duckdb_file_and_named_views(tmp_path: Path, parquet_file: Path) -> None:
    with duckdb.connect(str(tmp_path / "crm.duckdb")) as connection:
        connection.execute("CREATE TABLE tiers AS SELECT range AS id, 'gold' AS tier FROM range(4)")
    query = "SELECT d.id, t.tier FROM data d JOIN tiers t USING (id) ORDER BY id"
    table = read_all(
        {
            "type": "sql",
            "database": "crm.duckdb",
            "tables": {"data": "data.parquet"},
            "query": query,
        },
        tmp_path,
    )
    assert table.to_pydict() == {"id": [0, 1, 2, 3], "tier": ["gold"] * 4}


def test_a_bad_query_is_a_config_error_naming_the_key(cli, write_pipeline, tmp_path: Path) -> None:
    result = cli(
        "run",
        write_pipeline({"type": "sql", "query": "SELEC 1"}, {"type": "null"}),
        "--no-progress",
    )
    assert result.code == 2
    assert result.err.startswith("error: in.query:") and "syntax error" in result.err


@pytest.mark.parametrize(
    ("size", "expected"), [(1, [1] * 10), (5, [5, 5]), (4, [4, 4, 2]), (100, [10])]
)
def test_batch_sizes_one_exact_and_with_a_remainder(
    tmp_path: Path, size: int, expected: list[int]
) -> None:
    pq.write_table(sample_table(10), tmp_path / "one.parquet", row_group_size=10)
    pipeline = pipeline_from_mapping(
        {
            "in": {"type": "file", "path": "one.parquet", "batch_size": size},
            "out": {"type": "null"},
        },
        tmp_path,
    )
    job = Job(pipeline, load_registry())
    assert [b.num_rows for b in job.input.read(0)] == expected
    summary = job.run()
    assert (summary.rows_read, summary.accepted) == (10, 10)


@pytest.mark.parametrize("fmt", ["csv", "sql"])
def test_batch_size_holds_for_formats_that_cut_elsewhere(tmp_path: Path, fmt: str) -> None:
    pacsv.write_csv(pa.table({"n": list(range(23))}), tmp_path / "n.csv")
    in_config = (
        {"type": "file", "path": "n.csv"}
        if fmt == "csv"
        else {"type": "sql", "query": "SELECT * FROM 'n.csv'"}
    )
    in_config["batch_size"] = 10
    pipeline = pipeline_from_mapping({"in": in_config, "out": {"type": "null"}}, tmp_path)
    job = Job(pipeline, load_registry())
    assert [b.num_rows for b in job.input.read(0)] == [10, 10, 3]


def test_rebatch_keeps_every_row_in_order() -> None:
    batches = [
        pa.record_batch({"n": list(range(s, s + k))}) for s, k in [(0, 3), (3, 0), (3, 7), (10, 1)]
    ]
    out = list(rebatch(batches, 4))
    assert [b.num_rows for b in out] == [4, 4, 3]
    assert pa.Table.from_batches(out).column("n").to_pylist() == list(range(11))


def _lake(folder: Path) -> pa.Table:
    """Three Parquet files of 1000 rows in row groups of 300 (as Spark writes a folder),
    and a small lookup table."""
    (folder / "lake").mkdir()
    parts = []
    for f in range(3):
        ids = list(range(f * 1000, f * 1000 + 1000))
        part = pa.table(
            {"id": ids, "c": [i % 5 for i in ids], "tags": [[f"t{i % 3}"] for i in ids]}
        )
        pq.write_table(part, folder / "lake" / f"part-{f:05d}.snappy.parquet", row_group_size=300)
        parts.append(part)
    pq.write_table(pa.table({"c": [0, 1, 2], "label": ["a", "b", "c"]}), folder / "small.parquet")
    return pa.concat_tables(parts)


def test_sql_split_runs_the_query_per_row_group_range_with_every_row_once(tmp_path: Path) -> None:
    from arrowbulk.plugins.sql.input import SqlInput
    from arrowbulk.spi import RunContext

    _lake(tmp_path)
    query = "SELECT id, label, tags FROM u JOIN s USING (c) WHERE id % 7 <> 0"
    tables = {"u": "lake/*.parquet", "s": "small.parquet"}
    config = {"type": "sql", "batch_size": 128, "tables": tables, "query": query}
    whole = read_all(config, tmp_path)
    split = SqlInput(
        {**config, "split": {"table": "u", "rows_per_task": 500}}, RunContext("r", tmp_path)
    )
    # Row groups 300/300/300/100 per file, whole groups up to at least 500 rows: a task may
    # end in the next file.
    assert split.replayable and split.task_count() == 5
    assert split.describe_task(1) == (
        "query result over u, part 2 of 5 (part-00000.snappy.parquet rows 600-999, "
        "part-00001.snappy.parquet rows 0-299)"
    )
    parts = [pa.Table.from_batches(list(split.read(i)), split.schema()) for i in range(5)]
    assert all(len(p) for p in parts)
    # Every row of the whole query in exactly one part; each part the same when read again.
    assert pa.concat_tables(parts).sort_by("id").equals(whole.sort_by("id"))
    again = [pa.Table.from_batches(list(split.read(i)), split.schema()) for i in range(5)]
    assert all(a.equals(b) for a, b in zip(parts, again, strict=True))


@pytest.mark.parametrize(
    ("query", "refusal"),
    [
        ("SELECT c, count(*) AS n FROM u GROUP BY c", r"combines rows of u \(HASH_GROUP_BY\)"),
        ("SELECT DISTINCT c FROM u", r"combines rows of u \(HASH_GROUP_BY\)"),
        ("SELECT * FROM u LIMIT 3", r"combines rows of u \(STREAMING_LIMIT\)"),
        ("SELECT id, row_number() OVER () AS n FROM u", r"combines rows of u \(STREAMING_WINDOW\)"),
        ("SELECT * FROM u WHERE id > (SELECT avg(id) FROM u)", r"combines rows of u"),
        ("SELECT s.* FROM s LEFT JOIN u USING (c)", r"combines rows of u \(HASH_JOIN LEFT\)"),
        ("SELECT * FROM s WHERE c IN (SELECT c FROM u)", r"combines rows of u \(HASH_JOIN SEMI\)"),
        ("SELECT a.id FROM u AS a JOIN u AS b USING (id)", r"reads u 2 times"),
        ("SELECT label FROM s", r"reads u 0 times"),
    ],
)
def test_sql_split_refuses_a_query_whose_parts_would_differ(
    tmp_path: Path, query: str, refusal: str
) -> None:
    from arrowbulk import ConfigError
    from arrowbulk.plugins.sql.input import SqlInput
    from arrowbulk.spi import RunContext

    _lake(tmp_path)
    config = {
        "type": "sql",
        "batch_size": 128,
        "tables": {"u": "lake/*.parquet", "s": "small.parquet"},
        "query": query,
        "split": {"table": "u", "rows_per_task": 500},
    }
    with pytest.raises(ConfigError, match=refusal):
        SqlInput(config, RunContext("r", tmp_path)).schema()
    # Queries that keep each row of u on its own are split.
    kept = {
        **config,
        "query": "SELECT u.* FROM u LEFT JOIN s USING (c) WHERE c IN (SELECT c FROM s)",
    }
    assert SqlInput(kept, RunContext("r", tmp_path)).schema().names == ["id", "c", "tags"]


def test_sql_split_config_errors_name_the_key(tmp_path: Path) -> None:
    from arrowbulk import ConfigError
    from arrowbulk.plugins.sql.input import SqlInput
    from arrowbulk.spi import RunContext

    _lake(tmp_path)
    (tmp_path / "t.csv").write_text("id\n1\n")
    base = {"type": "sql", "batch_size": 128, "query": "SELECT * FROM u"}
    cases = [
        (
            {"tables": {"u": "lake/*.parquet"}, "split": {"table": "v"}},
            r"in\.split\.table: 'v' is not a name of in\.tables \(u\)",
        ),
        (
            {"tables": {"u": "t.csv"}, "split": {"table": "u"}},
            r"in\.split\.table: u must be Parquet files",
        ),
        (
            {"tables": {"u": "nothing/*.parquet"}, "split": {"table": "u"}},
            r"in\.split\.table: no file matches u",
        ),
        (
            {
                "tables": {"u": "lake/*.parquet"},
                "split": {"table": "u"},
                "partition_by": {"column": "id", "parts": 2},
            },
            r"in\.split: not with in\.partition_by",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            SqlInput({**base, **extra}, RunContext("r", tmp_path)).task_count()


def test_sql_partition_by_splits_the_result_into_parts_read_the_same_twice(
    tmp_path: Path,
) -> None:
    from arrowbulk import ConfigError
    from arrowbulk.plugins.sql.input import SqlInput
    from arrowbulk.spi import RunContext

    table = pa.table({"id": list(range(1000)), "group": [i % 7 for i in range(1000)]})
    pq.write_table(table, tmp_path / "t.parquet")
    config = {
        "type": "sql",
        "query": "SELECT * FROM 't.parquet'",
        "batch_size": 100,
        "partition_by": {"column": "group", "parts": 4},
    }
    source = SqlInput(config, RunContext("r", tmp_path))
    assert source.replayable and source.task_count() == 4
    parts = [pa.Table.from_batches(list(source.read(i)), source.schema()) for i in range(4)]
    # Every row in exactly one part, the rows of one group together, and each part in the
    # same order when read again (what the record check and a resume rely on).
    everything = pa.concat_tables(parts).sort_by("id")
    assert everything.equals(table.sort_by("id"))
    groups = [set(p.column("group").to_pylist()) for p in parts]
    assert sum(len(g) for g in groups) == 7  # no group split across parts
    again = [pa.Table.from_batches(list(source.read(i)), source.schema()) for i in range(4)]
    assert all(a.equals(b) for a, b in zip(parts, again, strict=True))
    wrong = {**config, "partition_by": {"column": "nope", "parts": 4}}
    with pytest.raises(ConfigError, match=r"in\.partition_by\.column: 'nope' is not a column"):
        SqlInput(wrong, RunContext("r", tmp_path)).schema()
