"""The arrowbulk command: exit codes, one-message errors, summaries, plugins, preview, validate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from helpers import sample_table

REPO = Path(__file__).resolve().parent.parent


def test_run_prints_a_summary_and_writes_it_as_json(
    cli, write_pipeline, tmp_path: Path, parquet_file: Path
) -> None:
    job = write_pipeline(
        {"type": "file", "path": "data.parquet"}, {"type": "file", "path": "out/x.parquet"}
    )
    result = cli("run", job, "--summary-json", tmp_path / "summary.json", "--no-progress")
    assert result.code == 0, result.err
    assert "SUCCESS" in result.out and "rows read" in result.out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "success"
    assert summary["rows"] == {"read": 10, "accepted": 10, "rejected": 0, "unsent": 0}
    assert summary["tasks"] == summary["tasks_committed"] == 3
    assert len(summary["details"]["files"]) == 3


def test_a_config_error_exits_2_with_the_key_path_and_no_traceback(
    cli, write_pipeline, parquet_file: Path
) -> None:
    job = write_pipeline(
        {"type": "file", "path": "data.parquet", "format": "xml"}, {"type": "null"}
    )
    result = cli("run", job)
    assert result.code == 2
    assert "in.format: 'xml' is not one of ['parquet', 'arrow', 'csv', 'jsonl']" in result.err
    assert "Traceback" not in result.err


def test_an_unknown_plugin_type_names_the_installed_ones(
    cli, write_pipeline, parquet_file: Path
) -> None:
    result = cli("run", write_pipeline({"type": "file", "path": "data.parquet"}, {"type": "s3"}))
    assert result.code == 2
    assert "out.type: no output plugin named 's3' (installed: file, insider, null)" in result.err


def test_a_failed_job_exits_1_and_still_prints_the_account(
    cli, write_pipeline, tmp_path: Path
) -> None:
    (tmp_path / "bad.csv").write_text("n\n1\n2\nnot-a-number\n")
    (tmp_path / "good.csv").write_text("n\n3\n")
    job = write_pipeline(
        {"type": "file", "path": ["good.csv", "bad.csv"]}, {"type": "null"}, {"max_threads": 1}
    )
    result = cli("run", job, "--no-progress")
    assert result.code == 1
    assert "FAILED" in result.out
    assert result.err.startswith("error: bad.csv, row 2, column n: 'not-a-number' is not an int64")
    assert "Traceback" not in result.err


def test_a_missing_config_file_is_a_usage_error(cli, tmp_path: Path) -> None:
    result = cli("run", tmp_path / "nope.yml")
    assert result.code == 2 and "cannot read config file" in result.err


def test_plugins_prints_json_with_kind_name_version_and_distribution(cli) -> None:
    result = cli("plugins")
    rows = json.loads(result.out)
    by_key = {(r["kind"], r["name"]): r for r in rows}
    assert by_key[("input", "sql")]["distribution"] == "arrowbulk"
    assert by_key[("output", "file")]["version"] == "0.1.0"
    assert {("input", "file"), ("output", "null")} <= set(by_key)


def test_preview_shows_the_schema_and_first_rows(cli, write_pipeline, parquet_file: Path) -> None:
    result = cli(
        "preview",
        write_pipeline({"type": "file", "path": "data.parquet"}, {"type": "null"}),
        "--rows",
        "3",
    )
    assert result.code == 0
    assert "tags: list<element: string>" in result.out
    assert "first 3 row(s)" in result.out and "név-1" in result.out


def test_validate_sends_nothing_and_reports_ok(
    cli, write_pipeline, parquet_file: Path, tmp_path: Path
) -> None:
    result = cli(
        "validate",
        write_pipeline(
            {"type": "file", "path": "data.parquet"}, {"type": "file", "path": "o/x.parquet"}
        ),
    )
    assert result.code == 0, result.err
    assert "schema: ok (6 columns, 3 task(s))" in result.out
    assert not (tmp_path / "o").exists()


def test_the_installed_command_runs_the_example_from_another_directory(tmp_path: Path) -> None:
    env = {**os.environ, "ARROWBULK_OUT_DIR": str(tmp_path)}
    example = REPO / "examples" / "users-to-parquet.yml"
    done = subprocess.run(
        [sys.executable, "-m", "arrowbulk.cli", "run", str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    copied = pq.read_table(tmp_path / "users-copy.parquet")
    original = pq.read_table(REPO / "examples" / "users.parquet").sort_by("uuid")
    assert copied.num_rows == original.num_rows == 200
    assert copied.to_pylist() == original.to_pylist()


def test_no_traceback_for_a_bad_yaml_file(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("in: [unclosed\n")
    done = subprocess.run(
        [sys.executable, "-m", "arrowbulk.cli", "run", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not valid YAML" in done.stderr and "Traceback" not in done.stderr


def test_sample_table_is_stable() -> None:
    # The fixtures above rely on this shape.
    assert sample_table(3).column_names == ["id", "name", "score", "active", "tags", "at"]


def test_progress_is_reported_as_log_lines_when_not_on_a_terminal(caplog) -> None:
    import io
    import logging
    import time

    from arrowbulk.progress import Progress

    progress = Progress(stream=io.StringIO(), interval=0.05)
    with caplog.at_level(logging.INFO, logger="arrowbulk.progress"):
        progress.start()
        progress.add(1234)
        time.sleep(0.2)
        progress.stop()
    assert any("progress: read 1,234" in r.getMessage() for r in caplog.records)


def test_progress_draws_a_bar_on_a_terminal() -> None:
    import io
    import time

    from arrowbulk.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(stream=screen)
    progress.start()
    progress.add(5000)
    time.sleep(0.5)
    progress.stop()
    assert "read 5,000" in screen.getvalue() and "rows/s" in screen.getvalue()


def test_progress_shows_settled_rows_a_percentage_an_eta_and_what_it_waits_on() -> None:
    from arrowbulk.progress import Progress

    progress = Progress()
    progress.total = 10_000
    progress.add(6_000)
    progress.acknowledge(2_500)
    progress.status(lambda: "3 request(s) before a retry")
    line = progress.line()
    assert "read 6,000 of 10,000" in line and "settled 2,500" in line and "25%" in line
    assert "ETA " in line and "waiting: 3 request(s) before a retry" in line


def test_a_jobs_progress_counts_what_the_destination_settled(run_insider, sandbox) -> None:
    from arrowbulk.progress import Progress

    seen: list[Progress] = []
    original = Progress.stop

    def stop(self: Progress) -> None:
        seen.append(self)
        original(self)

    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Progress, "stop", stop)
        table = sample_table(10).select(["id", "name"]).rename_columns(["uuid", "name"])
        table = table.set_column(0, "uuid", table.column("uuid").cast("string"))
        run = run_insider(table, skip_invalid_records=True)
    assert run.code == 0, run.err
    line = seen[-1].line()
    assert "settled 10" in line, line


def test_a_reader_that_goes_away_is_no_error(tmp_path, write_pipeline) -> None:
    """`arrowbulk preview job.yml | head -1`: no 'internal error', no traceback."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    # Far more text than a pipe buffers, so the writer meets the closed pipe for sure.
    pq.write_table(sample_table(50_000), tmp_path / "big.parquet")
    job = write_pipeline({"type": "file", "path": "big.parquet"}, {"type": "null"})
    shell = f"{sys.executable} -m arrowbulk.cli preview {job} --rows 50000 | head -1"
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("schema")
    assert "error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
