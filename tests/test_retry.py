"""arrowbulk retry: rejected records, fixed, go through the job's output again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import bodies, write_insider_job


def test_rejected_records_are_sent_again_after_the_fix(cli, sandbox, tmp_path: Path) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2", "u3"],
            "email": ["a@example.com", "broken", "c@example.com"],
            "birthday": pa.array(
                [dt.datetime(1990, 1, 2), dt.datetime(1991, 3, 4), dt.datetime(1992, 5, 6)],
                pa.timestamp("s"),
            ),
            "static_segment_id": pa.array([[1], [2, 3], None], pa.list_(pa.int64())),
        }
    )
    pq.write_table(table, tmp_path / "users.parquet")
    write_insider_job(
        tmp_path,
        sandbox.url,
        "users.parquet",
        skip_invalid_records=True,
        reject_file="rejects.jsonl",
    )
    first = cli("run", tmp_path / "job.yml", "--no-progress")
    assert first.code == 0, first.err
    rejects = tmp_path / "rejects.jsonl"
    [line] = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert line["record"]["birthday"] == "1991-03-04T00:00:00Z" and line["row"] == 1

    # The fix: correct the record in the reject file, then retry.
    line["record"]["email"] = "b@example.com"
    rejects.write_text(json.dumps(line) + "\n")
    second = cli(
        "retry",
        rejects,
        "--config",
        tmp_path / "job.yml",
        "--no-progress",
        "--summary-json",
        tmp_path / "s.json",
    )
    assert second.code == 0, second.err
    assert "retrying 1 record(s)" in second.out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rows"] == {"read": 1, "accepted": 1, "rejected": 0, "unsent": 0}
    sent = bodies(sandbox)[-1]["users"]
    assert sent == [
        {
            "identifiers": {"uuid": "u2", "email": "b@example.com"},
            "attributes": {"birthday": "1991-03-04T00:00:00Z", "static_segment_id": [2, 3]},
        }
    ]
    assert len(sandbox.profiles()) == 3


def test_records_rejected_again_go_to_a_new_file(cli, sandbox, tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"uuid": ["u1"], "email": ["broken"], "name": ["Ada"]}), tmp_path / "users.parquet"
    )
    write_insider_job(
        tmp_path,
        sandbox.url,
        "users.parquet",
        skip_invalid_records=True,
        reject_file="rejects.jsonl",
    )
    assert cli("run", tmp_path / "job.yml", "--no-progress").code == 0
    again = cli(
        "retry", tmp_path / "rejects.jsonl", "--config", tmp_path / "job.yml", "--no-progress"
    )
    assert again.code == 0
    retried = list(tmp_path.glob("rejects.retry-*.jsonl"))
    assert len(retried) == 1 and json.loads(retried[0].read_text())["rule"] == "pattern"
    assert (
        len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 1
    )  # the original is untouched


def test_retry_of_a_file_that_is_not_a_reject_file(cli, tmp_path: Path) -> None:
    (tmp_path / "job.yml").write_text("in: {type: file, path: x.csv}\nout: {type: null}\n")
    (tmp_path / "x.csv").write_text("a\n1\n")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    result = cli("retry", tmp_path / "bad.jsonl", "--config", tmp_path / "job.yml")
    assert result.code == 2 and "line 1: not JSON" in result.err


def _reject_line(run: str, row: int, email: str) -> str:
    record = {"uuid": f"u{row}", "email": email, "birthday": "1990-01-02T00:00:00Z"}
    line = {"run_id": run, "task": 0, "row": row, "stage": "validation", "record": record}
    return json.dumps(line)


def test_retry_selects_runs_skips_a_torn_last_line_and_takes_a_rows_last_rejection(
    cli, sandbox, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "uuid": ["u1"],
            "email": ["a@example.com"],
            "birthday": pa.array([dt.datetime(1990, 1, 2)], pa.timestamp("s")),
            "static_segment_id": pa.array([[1]], pa.list_(pa.int64())),
        }
    )
    pq.write_table(table, tmp_path / "users.parquet")
    job = write_insider_job(tmp_path, sandbox.url, "users.parquet", skip_invalid_records=True)
    rejects = tmp_path / "rejects.jsonl"
    lines = [
        _reject_line("run-a", 1, "one@example.com"),
        _reject_line("run-a", 2, "two@example.com"),
        _reject_line("run-b", 2, "two-again@example.com"),  # the resume rejected row 2 again
    ]
    torn = _reject_line("run-b", 3, "three@example.com")[:40]  # the crash cut it here
    rejects.write_text("\n".join(lines) + "\n" + torn)

    mixed = cli("retry", rejects, "--config", job, "--no-progress")
    assert mixed.code == 2
    assert "holds the rejects of 2 runs (run-a: 2 record(s), run-b: 1 record(s))" in mixed.err

    only_a = cli("retry", rejects, "--config", job, "--no-progress", "--run", "run-a")
    assert only_a.code == 0, only_a.err
    assert "retrying 2 record(s)" in only_a.out
    assert "the last line is incomplete" in only_a.err

    both = cli("retry", rejects, "--config", job, "--no-progress", "--run", "all")
    assert both.code == 0, both.err
    assert "retrying 2 record(s)" in both.out  # row 2 once, as the later run wrote it
    emails = sorted(u["identifiers"]["email"] for u in bodies(sandbox)[-1]["users"])
    assert emails == ["one@example.com", "two-again@example.com"]

    unknown = cli("retry", rejects, "--config", job, "--no-progress", "--run", "run-x")
    assert unknown.code == 2 and "--run run-x: not in" in unknown.err
