"""Resume: after an error or a kill -9, a run continues from the first unsettled rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest
import yaml
from helpers import API_KEY, PARTNER

from arrowbulk.plugins.insider.sandbox import InsiderSandbox

ROWS = 600


def write_job(folder: Path, url: str, **out) -> Path:
    table = pa.table(
        {
            "uuid": [f"u{i:04d}" for i in range(ROWS)],
            "name": [f"n{i}" for i in range(ROWS)],
            "tags": [f"['t{i % 7}']" for i in range(ROWS)],
        }
    )
    if not (folder / "users.arrow").exists():  # rewriting it would change the input's identity
        feather.write_feather(table, folder / "users.arrow", compression="uncompressed")
    config = {
        "type": "insider",
        "api_key": API_KEY,
        "partner_name": PARTNER,
        "endpoint": url,
        "max_records_per_request": 10,
        "max_requests_in_flight": 2,
        "max_retries": 1,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        **out,
    }
    job = folder / "job.yml"
    job.write_text(
        yaml.safe_dump(
            {"in": {"type": "file", "path": "users.arrow", "batch_size": 50}, "out": config}
        )
    )
    return job


def arrowbulk(folder: Path, *args: str, wait: bool = True):
    command = [sys.executable, "-m", "arrowbulk.cli", "run", "job.yml", "--no-progress", *args]
    if not wait:
        return subprocess.Popen(
            command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=90)


def summary(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def fault_free_profiles(tmp_path: Path) -> list[dict]:
    folder = tmp_path / "reference"
    folder.mkdir()
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        done = arrowbulk(_job(folder, sandbox.url))
        assert done.returncode == 0, done.stderr
        return sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"])


def _job(folder: Path, url: str) -> Path:
    write_job(folder, url)
    return folder


def sent_uuids(sandbox: InsiderSandbox) -> list[str]:
    return [
        u["identifiers"]["uuid"]
        for r in sandbox.requests
        if r.get("status") == 200
        for u in r["body"]["users"]
    ]


def test_a_job_stopped_by_an_outage_resumes_where_it_stopped(tmp_path: Path) -> None:
    reference = fault_free_profiles(tmp_path)
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_job(tmp_path, sandbox.url)
        sandbox.set_faults(healthy_requests=25, fail_status=503)
        first = arrowbulk(tmp_path, "--resume", "state.json", "--summary-json", "first.json")
        assert first.returncode == 1 and "gave up after 2 attempts" in first.stderr
        one = summary(tmp_path, "first.json")
        assert (
            one["rows"]["read"]
            == one["rows"]["accepted"] + one["rows"]["rejected"] + one["rows"]["unsent"]
        )
        assert one["rows"]["accepted"] == 250 and one["rows"]["unsent"] > 0

        sandbox.set_faults(healthy_requests=None)
        second = arrowbulk(tmp_path, "--resume", "state.json", "--summary-json", "second.json")
        assert second.returncode == 0, second.stderr
        two = summary(tmp_path, "second.json")
        resume = two["details"]["resume"]
        assert resume["resumed"] is True and resume["skipped_rows"] == 250
        assert two["rows"]["read"] == ROWS - 250 == two["rows"]["accepted"]
        assert sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"]) == reference
        assert sorted(set(sent_uuids(sandbox))) == [f"u{i:04d}" for i in range(ROWS)]
        assert len(sent_uuids(sandbox)) == ROWS  # nothing acknowledged was sent twice

        third = arrowbulk(tmp_path, "--resume", "state.json", "--summary-json", "third.json")
        assert third.returncode == 0 and summary(tmp_path, "third.json")["details"]["resume"][
            "note"
        ].startswith("the job had finished")


def test_kill_9_halfway_then_resume(tmp_path: Path) -> None:
    reference = fault_free_profiles(tmp_path)
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_job(tmp_path, sandbox.url)
        sandbox.set_faults(delay_seconds=0.05)
        process = arrowbulk(tmp_path, "--resume", "state.json", wait=False)
        deadline = time.time() + 60
        while len(sandbox.requests) < 25 and time.time() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        settled = json.loads((tmp_path / "state.json").read_text())["tasks"]["0"]["settled"]
        before = len(sent_uuids(sandbox))
        assert 0 < settled < ROWS

        sandbox.set_faults(delay_seconds=0.0)
        done = arrowbulk(tmp_path, "--resume", "state.json", "--summary-json", "after.json")
        assert done.returncode == 0, done.stderr
        after = summary(tmp_path, "after.json")
        assert after["details"]["resume"]["skipped_rows"] == settled
        assert after["rows"]["read"] == ROWS - settled == after["rows"]["accepted"]
        assert sorted(sandbox.profiles(), key=lambda p: p["identifiers"]["uuid"]) == reference
        resent = len(sent_uuids(sandbox)) - ROWS
        # What was acknowledged above the watermark, at most the in-flight window, plus the
        # answers lost with the process.
        assert 0 <= resent <= 2 * 10 + (before - settled)
        print(
            f"\nkill -9 after {before} acknowledged records: {settled} settled in the state, "
            f"{ROWS - settled} sent by the resume, {resent} of them a second time"
        )


@pytest.mark.parametrize("change", ["config", "input"])
def test_resume_refuses_a_changed_config_or_input(tmp_path: Path, change: str) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_job(tmp_path, sandbox.url)
        sandbox.set_faults(healthy_requests=5)
        assert arrowbulk(tmp_path, "--resume", "state.json").returncode == 1
        if change == "config":
            write_job(tmp_path, sandbox.url, attribute_operation="REPLACE_ATTRIBUTES")
        else:
            # A same-size rewrite that keeps the old time (cp -p, touch -d): new content.
            data = tmp_path / "users.arrow"
            before = data.stat()
            table = feather.read_table(data)
            names = pa.array([f"m{i}" for i in range(ROWS)])
            feather.write_feather(
                table.set_column(1, "name", names), data, compression="uncompressed"
            )
            assert data.stat().st_size == before.st_size
            os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
        again = arrowbulk(tmp_path, "--resume", "state.json")
        assert again.returncode == 2
        assert "the state was written for a different" in again.stderr
        assert ("output config" if change == "config" else "input data") in again.stderr


def test_resume_with_read_timeouts_changed_is_allowed(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_job(tmp_path, sandbox.url)
        sandbox.set_faults(healthy_requests=5)
        assert arrowbulk(tmp_path, "--resume", "state.json").returncode == 1
        sandbox.set_faults(healthy_requests=None)
        write_job(tmp_path, sandbox.url, read_timeout=30, max_requests_in_flight=4)
        assert arrowbulk(tmp_path, "--resume", "state.json").returncode == 0
        assert len(sandbox.profiles()) == ROWS
