"""Bad configs and bad data: one clear message or a rejected record, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import examples, write_insider_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def run_yaml(cli, tmp_path: Path, text: str):
    job = tmp_path / "job.yml"
    job.write_text(text)
    return cli("run", job, "--no-progress")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("", "a pipeline config must be a mapping"),
        ("- just\n- a list\n", "a pipeline config must be a mapping"),
        ("in: {type: file, path: a.csv}\n", "out: must be a mapping"),
        (
            "in: {type: file, path: a.csv, batch_size: 1000000000}\nout: {type: null}\n",
            "in.batch_size: 1000000000 is greater than the maximum",
        ),
        (
            "in: {type: file, path: a.csv, batch_sise: 10}\nout: {type: null}\n",
            "'batch_sise' was unexpected",
        ),
        ("in: {type: file}\nout: {type: null}\n", "in: 'path' is a required property"),
        (
            "in: {type: file, path: a.csv}\nout: {type: null}\nexec: {max_threads: -1}\n",
            "exec.max_threads: -1 is less than the minimum of 1",
        ),
        (
            "in: {type: file, path: nowhere.csv}\nout: {type: null}\n",
            "in.path: nowhere.csv does not exist",
        ),
        (
            "in: {type: file, path: a.csv}\nout: {type: insider, partner_name: p, api_key: k, export_mode: 3}\n",
            "out.export_mode: 3 is not one of",
        ),
        (
            "in: {type: file, path: '${NOT_SET_ANYWHERE}'}\nout: {type: null}\n",
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
    ],
)
def test_bad_configs_get_one_clear_message(cli, tmp_path: Path, config: str, expected: str) -> None:
    (tmp_path / "a.csv").write_text("uuid,name\nu1,Ada\n")
    result = run_yaml(cli, tmp_path, config)
    assert result.code == 2, result.out
    assert expected in result.err, result.err
    assert "Traceback" not in result.err and result.err.count("\n") <= 12


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "cannot read the schema of empty.csv as csv"),
        ("empty.jsonl", b"", "cannot read the schema of empty.jsonl as jsonl"),
        (
            "ragged.csv",
            b"a,b\n1,2\n3\n",
            "ragged.csv as csv: CSV parse error: Expected 2 columns, got 1",
        ),
        ("truncated.parquet", None, "truncated.parquet is not a readable Parquet file"),
        ("garbage.arrow", b"not arrow at all", "cannot read the schema of garbage.arrow as arrow"),
        (
            "bad.jsonl",
            b'{"a": 1}\n{"a": \n',
            "bad.jsonl as jsonl: JSON parse error: Invalid value. in row 1",
        ),
    ],
)
def test_bad_files_get_one_clear_message(
    cli, tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"a": list(range(1000))}), path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    result = run_yaml(cli, tmp_path, f"in: {{type: file, path: {name}}}\nout: {{type: null}}\n")
    assert result.code in (1, 2), result.out
    assert expected in result.err, result.err
    assert "Traceback" not in result.err


unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
anything = st.one_of(
    st.none(),
    unicode_text,
    st.sampled_from(["[", "['a'", "[1, 'x']", "[[1]]", "[true]", "undefined", "+90555", "a@b.co"]),
)


@st.composite
def hostile_tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(1, 20))
    strings = lambda: draw(st.lists(anything, min_size=rows, max_size=rows))  # noqa: E731
    return pa.table(
        {
            "uuid": pa.array(strings(), pa.string()),
            "email": pa.array(strings(), pa.string()),
            "phone_number": pa.array(strings(), pa.string()),
            "country": pa.array(strings(), pa.string()),
            "birthday": pa.array(strings(), pa.string()),
            "static_segment_id": pa.array(strings(), pa.string()),
            "tags": pa.array(strings(), pa.string()),
            "age": pa.array(
                draw(st.lists(st.one_of(st.none(), st.floats()), min_size=rows, max_size=rows)),
                pa.float64(),
            ),
            "big": pa.array(
                draw(
                    st.lists(
                        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                        min_size=rows,
                        max_size=rows,
                    )
                ),
                pa.int64(),
            ),
        }
    )


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(hostile_tables())
def test_random_values_in_every_column_are_sent_or_rejected_never_a_crash(
    tmp_path_factory, sandbox, table: pa.Table
) -> None:
    from arrowbulk.cli import main

    folder = tmp_path_factory.mktemp("hostile")
    pq.write_table(table, folder / "in.parquet")
    write_insider_job(
        folder, sandbox.url, "in.parquet", skip_invalid_records=True, reject_file="r.jsonl"
    )
    code = main(
        [
            "-q",
            "run",
            str(folder / "job.yml"),
            "--no-progress",
            "--summary-json",
            str(folder / "s.json"),
        ]
    )
    import json

    summary = json.loads((folder / "s.json").read_text())
    rows = summary["rows"]
    assert code == 0, summary
    assert (
        rows["read"] == table.num_rows == rows["accepted"] + rows["rejected"]
        and rows["unsent"] == 0
    )
    text = (folder / "r.jsonl").read_text() if (folder / "r.jsonl").exists() else ""
    lines = [
        line for line in text.split("\n") if line
    ]  # not splitlines: U+2028 is no line end here
    assert len(lines) == rows["rejected"]  # every rejection is in the file, with its reason
