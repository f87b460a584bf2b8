"""Filter plugins between in: and out:, on Arrow batches: rename, columns, sql, a third-party
filter, chains, every input and output, and errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import API_KEY, PARTNER, bodies

from arrowbulk import FilterPlugin, hookimpl
from arrowbulk.config import pipeline_from_mapping
from arrowbulk.plugins.filters.rename import snake_case
from arrowbulk.registry import load_registry
from arrowbulk.runner import Job

CRM = "First Name,Email,birthDate,Opt In,Score\nAyşe,a@example.com,1990-05-01,yes,1.5\nJon,j@example.com,1991-06-02,No,2\n"


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("First Name", "first_name"),
        ("Email", "email"),
        ("birthDate", "birth_date"),
        ("HTTPCode", "http_code"),
        (" Opt-In ", "opt_in"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rename_and_columns_turn_a_crm_csv_into_typed_columns(
    cli, write_pipeline, tmp_path
) -> None:
    (tmp_path / "crm.csv").write_text(CRM)
    job = write_pipeline(
        {"type": "file", "path": "crm.csv", "csv": {"strings_only": True}},
        {"type": "file", "path": "out/crm.jsonl"},
    )
    text = job.read_text() + (
        "filters:\n"
        "  - {type: rename, case: snake, columns: {opt_in: email_optin}}\n"
        "  - type: columns\n"
        "    drop: [score]\n"
        "    cast: {email_optin: boolean, birth_date: date}\n"
        "    add: {source: crm}\n"
    )
    job.write_text(text)
    preview = cli("preview", job)
    assert preview.code == 0, preview.err
    assert "email_optin: bool" in preview.out and "birth_date: date32" in preview.out
    assert cli("run", job, "--no-progress").code == 0
    assert read_jsonl(tmp_path / "out/crm.jsonl") == [
        {
            "first_name": "Ayşe",
            "email": "a@example.com",
            "birth_date": "1990-05-01",
            "email_optin": True,
            "source": "crm",
        },
        {
            "first_name": "Jon",
            "email": "j@example.com",
            "birth_date": "1991-06-02",
            "email_optin": False,
            "source": "crm",
        },
    ]


def test_a_value_that_cannot_be_cast_stops_a_job_whose_output_has_no_reject_path(
    cli, write_pipeline, tmp_path
) -> None:
    (tmp_path / "crm.csv").write_text("id,active\n1,yes\n2,maybe\n")
    job = write_pipeline(
        {"type": "file", "path": "crm.csv", "csv": {"strings_only": True}},
        {"type": "file", "path": "out/x.jsonl"},
    )
    job.write_text(job.read_text() + "filters: [{type: columns, cast: {active: boolean}}]\n")
    result = cli("run", job, "--no-progress")
    assert result.code == 1
    assert "crm.csv, row 1, filter columns, column active: 'maybe' is not a boolean" in result.err
    assert not (tmp_path / "out/x.jsonl").exists()


def test_timestamps_with_a_format_and_decimals(cli, write_pipeline, tmp_path) -> None:
    (tmp_path / "t.csv").write_text("at,price\n02/01/2024 10:11,19.90\n")
    job = write_pipeline(
        {"type": "file", "path": "t.csv", "csv": {"strings_only": True}},
        {"type": "file", "path": "out/t.parquet"},
    )
    job.write_text(
        job.read_text()
        + "filters: [{type: columns, cast: {at: {type: timestamp, format: '%d/%m/%Y %H:%M'}, price: 'decimal(6,2)'}}]\n"
    )
    assert cli("run", job, "--no-progress").code == 0
    table = pq.read_table(tmp_path / "out/t.parquet")
    assert str(table.schema.field("price").type) == "decimal128(6, 2)"
    assert table.column("at")[0].as_py().isoformat() == "2024-01-02T10:11:00"


def test_a_rename_collision_names_both_columns(cli, write_pipeline, tmp_path) -> None:
    (tmp_path / "c.csv").write_text("First Name,first_name\na,b\n")
    job = write_pipeline({"type": "file", "path": "c.csv"}, {"type": "null"})
    job.write_text(job.read_text() + "filters: [{type: rename, case: snake}]\n")
    result = cli("validate", job)
    assert result.code == 2
    assert "'First Name' and 'first_name' the same name 'first_name'" in result.err


def test_the_sql_filter_is_row_wise_and_reads_no_files(cli, write_pipeline, tmp_path) -> None:
    pq.write_table(pa.table({"email": [" A@X.CO ", "b@y.co", None]}), tmp_path / "u.parquet")
    job = write_pipeline(
        {"type": "file", "path": "u.parquet"}, {"type": "file", "path": "out/u.jsonl"}
    )
    job.write_text(
        job.read_text()
        + 'filters: [{type: sql, query: "SELECT lower(trim(email)) AS email FROM batch WHERE email IS NOT NULL"}]\n'
    )
    done = cli("run", job, "--no-progress")
    assert done.code == 0, done.err
    assert read_jsonl(tmp_path / "out/u.jsonl") == [{"email": "a@x.co"}, {"email": "b@y.co"}]
    job.write_text(
        job.read_text().replace(
            "FROM batch WHERE email IS NOT NULL", "FROM read_csv('/etc/passwd')"
        )
    )
    refused = cli("validate", job)
    assert refused.code == 2 and "filters: sql.query" in refused.err


class Upper(FilterPlugin):
    """A third-party filter: upper-cases one column."""

    type_name = "upper"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return {
            "type": "object",
            "required": ["type", "column"],
            "properties": {"type": {}, "column": {"type": "string"}},
        }

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        return schema

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        index = batch.schema.get_field_index(self.config["column"])
        return batch.set_column(index, self.config["column"], pc.utf8_upper(batch.column(index)))


class UpperPlugins:
    @hookimpl
    def register_filter_plugins(self, register: Callable[[type[FilterPlugin]], None]) -> None:
        register(Upper)


@pytest.mark.parametrize("source", ["file", "sql"])
def test_a_third_party_filter_chained_into_insider(tmp_path: Path, sandbox, source: str) -> None:
    pq.write_table(
        pa.table({"User ID": ["u1", "u2"], "City Name": ["izmir", "ankara"]}),
        tmp_path / "u.parquet",
    )
    source_config = (
        {"type": "file", "path": "u.parquet"}
        if source == "file"
        else {"type": "sql", "query": "SELECT * FROM 'u.parquet'"}
    )
    pipeline = pipeline_from_mapping(
        {
            "in": source_config,
            "filters": [
                {
                    "type": "rename",
                    "case": "snake",
                    "columns": {"user_id": "uuid", "city_name": "city"},
                },
                {"type": "upper", "column": "city"},
            ],
            "out": {
                "type": "insider",
                "api_key": API_KEY,
                "partner_name": PARTNER,
                "endpoint": sandbox.url,
            },
        },
        tmp_path,
    )
    summary = Job(pipeline, load_registry(extra=[UpperPlugins()])).run()
    assert summary.status == "success", summary.error
    users = bodies(sandbox)[0]["users"]
    assert [(u["identifiers"]["uuid"], u["attributes"]["city"]) for u in users] == [
        ("u1", "IZMIR"),
        ("u2", "ANKARA"),
    ]


class Broken(Upper):
    type_name = "broken"

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise RuntimeError("filter bug")


class BrokenPlugins:
    @hookimpl
    def register_filter_plugins(self, register: Callable[[type[FilterPlugin]], None]) -> None:
        register(Broken)


def test_an_error_inside_a_filter_aborts_the_task_and_leaves_no_output(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": ["x"]}), tmp_path / "a.parquet")
    pipeline = pipeline_from_mapping(
        {
            "in": {"type": "file", "path": "a.parquet"},
            "filters": [{"type": "broken", "column": "a"}],
            "out": {"type": "file", "path": "out/a.jsonl"},
        },
        tmp_path,
    )
    summary = Job(pipeline, load_registry(extra=[BrokenPlugins()])).run()
    assert summary.status == "failed" and "filter bug" in (summary.error or "")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_unknown_filter_types_and_bad_filter_lists_are_config_errors(
    cli, write_pipeline, tmp_path
) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")
    job = write_pipeline({"type": "file", "path": "a.parquet"}, {"type": "null"})
    base = job.read_text()
    job.write_text(base + "filters: [{type: nope}]\n")
    result = cli("validate", job)
    assert result.code == 2 and "filters[0].type: no filter plugin named 'nope'" in result.err
    job.write_text(base + "filters: {type: rename}\n")
    result = cli("validate", job)
    assert result.code == 2 and "filters: must be a list" in result.err


# --- values a filter cannot take reach the output's reject path -----------------------------

CAST_CSV = "uuid,age,optin\nu0,30,yes\nu1,thirty,no\nu2,31,maybe\nu3,32,y\n"


def insider_with_cast(tmp_path: Path, url: str, source: dict[str, Any], **out: Any) -> Path:
    import yaml

    (tmp_path / "users.csv").write_text(CAST_CSV)
    config = {
        "in": source,
        "filters": [
            {"type": "rename", "columns": {"optin": "email_optin"}},
            {"type": "columns", "cast": {"age": "int64", "email_optin": "boolean"}},
        ],
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": url,
            "reject_file": "rejects.jsonl",
            "normalize": False,
            **out,
        },
    }
    job = tmp_path / "cast.yml"
    job.write_text(yaml.safe_dump(config), encoding="utf-8")
    return job


CSV_INPUT = {"type": "file", "path": "users.csv", "csv": {"strings_only": True}}
SQL_INPUT = {
    "type": "sql",
    "query": "SELECT * FROM read_csv('users.csv', all_varchar = true) ORDER BY uuid",
}


@pytest.mark.parametrize("source", [CSV_INPUT, SQL_INPUT], ids=["file", "sql-spooled"])
def test_uncastable_rows_are_rejected_with_column_and_value(cli, sandbox, tmp_path, source) -> None:
    job = insider_with_cast(tmp_path, sandbox.url, source, skip_invalid_records=True)
    summary = tmp_path / "summary.json"
    result = cli("run", job, "--no-progress", "--summary-json", summary)
    assert result.code == 0, result.err
    figures = json.loads(summary.read_text())
    assert figures["rows"] == {"read": 4, "accepted": 2, "rejected": 2, "unsent": 0}
    assert figures["rejected_by_reason"] == {"age: cast": 1, "email_optin: cast": 1}
    sent = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
    assert sent == ["u0", "u3"]
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["stage"], r["column"]) for r in rejects] == [
        (1, "filter", "age"),
        (2, "filter", "email_optin"),
    ]
    assert "'thirty' cannot be cast to int64" in rejects[0]["message"]
    assert rejects[0]["record"] == {"uuid": "u1", "age": "thirty", "optin": "no"}  # as read


def test_uncastable_rows_stop_the_job_before_anything_is_sent(cli, sandbox, tmp_path) -> None:
    job = insider_with_cast(tmp_path, sandbox.url, CSV_INPUT)  # skip_invalid_records: false
    result = cli("run", job, "--no-progress")
    assert result.code == 1
    assert "users.csv, row 1, filter columns, column age: 'thirty' cannot be cast" in result.err
    assert "Nothing was sent" in result.err
    assert sandbox.requests == []


def test_validate_lists_uncastable_rows_with_the_other_rules(cli, sandbox, tmp_path) -> None:
    job = insider_with_cast(tmp_path, sandbox.url, CSV_INPUT, skip_invalid_records=True)
    result = cli("validate", job, "--rejects", tmp_path / "invalid.jsonl")
    assert result.code == 0, result.out + result.err
    assert "records: 4 checked, 2 invalid" in result.out
    assert any(line.startswith("age: cast") for line in result.out.splitlines())
    lines = (tmp_path / "invalid.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [1, 2]


def test_rows_dropped_by_an_earlier_filter_are_said_to_be_untraceable(
    cli, sandbox, tmp_path
) -> None:
    import yaml

    job = insider_with_cast(tmp_path, sandbox.url, CSV_INPUT, skip_invalid_records=True)
    config = yaml.safe_load(job.read_text())
    config["filters"].insert(0, {"type": "sql", "query": "SELECT * FROM batch WHERE uuid <> 'u0'"})
    job.write_text(yaml.safe_dump(config))
    result = cli("run", job, "--no-progress")
    assert result.code == 0, result.err
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    # The WHERE dropped u0, so the input rows of later rejects are unknown: -1, not a guess.
    assert [(r["row"], r["record"]["uuid"]) for r in rejects] == [(-1, "u1"), (-1, "u2")]
