"""Ctrl-C and SIGTERM stop a job gracefully: no new reads or requests, the answers in flight
awaited (up to exec.shutdown_timeout), the state and summary written, exit 130 / 143; a second
signal exits at once. Real processes, real signals, the sandbox over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import API_KEY, PARTNER
from test_resume import ROWS, write_job

from arrowbulk.plugins.insider.sandbox import InsiderSandbox

IN_FLIGHT = 2


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "arrowbulk.cli", "run", "job.yml", "--no-progress"]
    return subprocess.Popen(
        [*command, "--summary-json", "summary.json", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_requests(sandbox: InsiderSandbox, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(sandbox.requests) < count:
        assert time.monotonic() < deadline, "the job sent nothing"
        time.sleep(0.02)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_within_two_seconds_and_the_resume_loses_nothing(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=0.3)  # 60 requests, 2 at a time: about 9 s in all
        write_job(tmp_path, sandbox.url)
        job = start(tmp_path, "--resume", "state.json")
        wait_for_requests(sandbox, 6)
        signalled = time.time()
        job.send_signal(sig)
        out, err = job.communicate(timeout=30)
        took = time.time() - signalled
        late = [r for r in sandbox.requests if r["at"] > signalled + 0.05]
        assert job.returncode == code, err
        print(
            f"\n{sig.name}: stopped {took:.2f}s after the signal, {len(late)} request(s) after it"
        )
        assert took < 2 + 0.3, f"took {took:.2f}s to stop"
        assert len(late) == 0, f"{len(late)} request(s) started after the signal"
        assert "INTERRUPTED" in out and "Traceback" not in err
        summary = json.loads((tmp_path / "summary.json").read_text())
        rows = summary["rows"]
        assert summary["status"] == "interrupted"
        assert rows["read"] == rows["accepted"] + rows["rejected"] + rows["unsent"]
        assert rows["unsent"] > 0 and rows["accepted"] > 0
        assert summary["error"].startswith(f"interrupted by {sig.name}")

        sandbox.set_faults(delay_seconds=0)
        again = start(tmp_path, "--resume", "state.json")
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert len(sandbox.profiles()) == ROWS
        resumed = json.loads((tmp_path / "summary.json").read_text())["details"]["resume"]
        assert resumed["skipped_rows"] >= rows["accepted"] - IN_FLIGHT * 10


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=10)  # answers in flight would take 10 s
        write_job(tmp_path, sandbox.url)
        job = start(tmp_path, "--resume", "state.json")
        wait_for_requests(sandbox, 1)
        job.send_signal(signal.SIGINT)
        time.sleep(0.3)
        second = time.monotonic()
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=30)
        assert time.monotonic() - second < 1.0
        assert job.returncode == 130
        assert "exiting now" in err
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["tasks"]["0"]["settled"] == 0  # nothing was acknowledged, nothing skipped


def test_the_shutdown_timeout_bounds_the_wait_for_answers(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=10)
        job_file = write_job(tmp_path, sandbox.url)
        text = job_file.read_text() + "exec: {shutdown_timeout: 1}\n"
        job_file.write_text(text)
        job = start(tmp_path)
        wait_for_requests(sandbox, 1)
        signalled = time.monotonic()
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=30)
        assert time.monotonic() - signalled < 3.0
        assert job.returncode == 143, err
        rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
        assert rows["accepted"] == 0 and rows["unsent"] == rows["read"] > 0
