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
