"""The record check before sending runs tasks in parallel, and still reports the invalid record
a check in task order finds first; the account and the reject file agree."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from helpers import write_insider_job


def test_the_first_invalid_record_in_task_order_is_reported(cli, sandbox, tmp_path: Path) -> None:
    rows = 4000  # four row groups, four tasks, two threads
    emails = [f"u{i}@example.com" for i in range(rows)]
    for bad in (1500, 3100, 3900):  # tasks 1 and 3
        emails[bad] = f"broken-{bad}"
    table = pa.table(
        {"uuid": [f"u{i}" for i in range(rows)], "email": emails, "name": ["n"] * rows}
    )
    pq.write_table(table, tmp_path / "users.parquet", row_group_size=1000)
    job = write_insider_job(tmp_path, sandbox.url, "users.parquet", reject_file="rejects.jsonl")
    (tmp_path / "job.yml").write_text(job.read_text() + "exec: {max_threads: 2}\n")
    for _ in range(3):  # the same answer however the threads interleave
        (tmp_path / "rejects.jsonl").unlink(missing_ok=True)
        result = cli("run", job, "--no-progress", "--summary-json", tmp_path / "s.json")
        assert result.code == 1
        assert "row 500 of task 1, column email" in result.err
        assert sandbox.requests == []  # nothing was sent
        summary = json.loads((tmp_path / "s.json").read_text())
        lines = (tmp_path / "rejects.jsonl").read_text().splitlines()
        assert summary["rows"]["rejected"] == len(lines) >= 1
        rows_ = summary["rows"]
        assert rows_["read"] == rows_["accepted"] + rows_["rejected"] + rows_["unsent"]
