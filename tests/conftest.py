"""Shared fixtures: pipelines written to disk, the CLI run in-process, sample tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import yaml

# The shared helpers live in helpers.py (tests import them from there); fixtures use them too.
from helpers import API_KEY, PARTNER, sample_table

from arrowbulk.cli import main


@pytest.fixture(autouse=True)
def _only_builtin_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not pick up whatever else happens to be installed.
    monkeypatch.setenv("ARROWBULK_PLUGINS", "file,sql,null,insider,filters,adbc,executors")


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    pq.write_table(sample_table(10), path, row_group_size=4)
    return path


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    def write(
        in_: dict[str, Any],
        out: dict[str, Any],
        exec_: dict[str, Any] | None = None,
        name: str = "job.yml",
    ) -> Path:
        document: dict[str, Any] = {"in": in_, "out": out}
        if exec_ is not None:
            document["exec"] = exec_
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return path

    return write


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# --- Insider -------------------------------------------------------------------------------


@pytest.fixture
def sandbox():
    from arrowbulk.plugins.insider.sandbox import InsiderSandbox

    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as server:
        yield server


class InsiderRun:
    """What one insider job did: exit code, output, summary, rejects."""

    def __init__(
        self, result: CliResult, summary: dict[str, Any], rejects: list[dict[str, Any]]
    ) -> None:
        self.code, self.out, self.err = result.code, result.out, result.err
        self.summary = summary
        self.rejects = rejects

    @property
    def rows(self) -> dict[str, int]:
        return self.summary["rows"]


@pytest.fixture
def run_insider(tmp_path: Path, cli, sandbox) -> Callable[..., InsiderRun]:
    counter = iter(range(1000))

    def run(table: pa.Table, endpoint: str | None = None, **out: Any) -> InsiderRun:
        n = next(counter)
        data = tmp_path / f"input-{n}.arrow"  # one file, one task: request boundaries are exact
        feather.write_feather(table, data)
        config = {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": endpoint or sandbox.url,
            "reject_file": f"rejects-{n}.jsonl",
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            **out,
        }
        job = tmp_path / f"job-{n}.yml"
        job.write_text(
            yaml.safe_dump({"in": {"type": "file", "path": data.name}, "out": config}),
            encoding="utf-8",
        )
        summary_path = tmp_path / f"summary-{n}.json"
        result = cli("run", job, "--no-progress", "--summary-json", summary_path)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        reject_path = tmp_path / f"rejects-{n}.jsonl"
        text = reject_path.read_text() if reject_path.exists() else ""
        rejects = [json.loads(line) for line in text.split("\n") if line]
        return InsiderRun(result, summary, rejects)

    return run
