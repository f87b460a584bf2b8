"""A failed write of the state or the reject file stops the job with a true summary; a folder
that cannot be written is refused before anything is sent. Real file systems: a small tmpfs
filled up mid-run, and one remounted read-only (root only; skipped elsewhere)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import API_KEY, PARTNER, bodies, write_insider_job

from arrowbulk.plugins.insider.sandbox import InsiderSandbox

USERS = 2000


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (root can mount one; others skip)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system until it says ENOSPC; return the filler (delete it to free)."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    probe = folder / "probe"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 8192)
            os.fsync(handle.fileno())
    except OSError as error:
        assert error.errno == errno.ENOSPC
    else:
        pytest.fail("the tmpfs did not fill")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return filler


def write_job(folder: Path, url: str, **out) -> Path:
    emails = [f"user{i}@example.com" if i % 4 else f"not-an-email-{i}" for i in range(USERS)]
    names = [f"n{i}" for i in range(USERS)]
    table = pa.table({"uuid": [f"u{i:05d}" for i in range(USERS)], "email": emails, "name": names})
    feather.write_feather(table, folder / "users.arrow")
    config = {
        "type": "insider",
        "api_key": API_KEY,
        "partner_name": PARTNER,
        "endpoint": url,
        "max_records_per_request": 50,
        "max_requests_in_flight": 2,
        "skip_invalid_records": True,
        **out,
    }
    job = folder / "job.yml"
    job.write_text(
        yaml.safe_dump(
            {"in": {"type": "file", "path": "users.arrow", "batch_size": 100}, "out": config}
        )
    )
    return job


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "arrowbulk.cli", "run", "job.yml", "--no-progress", *args]
    return subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(sandbox: InsiderSandbox, requests: int, job: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while len(sandbox.requests) < requests:
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"the job sent too little: {job.communicate()[1]}")
        time.sleep(0.01)


def accepted_by_sandbox(sandbox: InsiderSandbox) -> int:
    return sum(len(b["users"]) for b in bodies(sandbox))


def test_a_full_disk_under_the_state_stops_the_job_with_a_true_summary(
    tmp_path: Path, disk: Path
) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=0.05)
        write_job(tmp_path, sandbox.url)
        job = start(tmp_path, "--resume", str(disk / "state.json"), "--summary-json", "s.json")
        wait_for(sandbox, 5, job)
        filler = fill(disk)
        at_failure = len(sandbox.requests)
        _, err = job.communicate(timeout=60)
        assert job.returncode == 1, err
        assert (
            f"cannot write the resume state {disk / 'state.json'}: No space left on device" in err
        )
        assert "Traceback" not in err and "internal error" not in err
        print(f"\nstate on a full disk: {len(sandbox.requests) - at_failure} request(s) after it")
        assert len(sandbox.requests) <= at_failure + 2, "requests went on after the failure"
        summary = json.loads((tmp_path / "s.json").read_text())
        rows = summary["rows"]
        assert rows["read"] == rows["accepted"] + rows["rejected"] + rows["unsent"]
        assert rows["accepted"] == accepted_by_sandbox(sandbox) > 0

        filler.unlink()
        sandbox.set_faults(delay_seconds=0)
        again = start(tmp_path, "--resume", str(disk / "state.json"), "--summary-json", "s.json")
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        resume = json.loads((tmp_path / "s.json").read_text())["details"]["resume"]
        uuids = [u["identifiers"]["uuid"] for b in bodies(sandbox) for u in b["users"]]
        assert len(set(uuids)) == USERS * 3 // 4
        resent = len(uuids) - len(set(uuids))
        print(f"resume after the full disk: {resent} sent twice, bound {resume['resent_at_most']}")
        assert resent <= resume["resent_at_most"] <= 2 * 50


def test_a_full_disk_under_the_reject_file_stops_the_job(tmp_path: Path, disk: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=0.05)
        write_job(tmp_path, sandbox.url, reject_file=str(disk / "rejects.jsonl"))
        job = start(tmp_path, "--summary-json", "s.json")
        wait_for(sandbox, 3, job)
        fill(disk)
        _, err = job.communicate(timeout=60)
        assert job.returncode == 1, err
        assert f"cannot write the reject file {disk / 'rejects.jsonl'}" in err
        assert "No space left on device" in err and "internal error" not in err
        rows = json.loads((tmp_path / "s.json").read_text())["rows"]
        assert rows["read"] == rows["accepted"] + rows["rejected"] + rows["unsent"]
        lines = (disk / "rejects.jsonl").read_bytes().split(b"\n")
        complete = [json.loads(line) for line in lines[:-1]]
        assert rows["rejected"] == len(complete), "a rejection was counted but not written"


@pytest.mark.parametrize("where", ["--resume", "reject_file", "--summary-json"])
def test_a_read_only_folder_is_refused_before_anything_is_sent(
    tmp_path: Path, disk: Path, where: str
) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        out = {"reject_file": str(disk / "r" / "rejects.jsonl")} if where == "reject_file" else {}
        write_job(tmp_path, sandbox.url, **out)
        args = {
            "--resume": ["--resume", str(disk / "state.json")],
            "--summary-json": ["--summary-json", str(disk / "out" / "s.json")],
        }.get(where, [])
        job = start(tmp_path, *args)
        _, err = job.communicate(timeout=60)
        assert job.returncode == 2, err
        assert "Read-only file system" in err and "internal error" not in err
        assert sandbox.requests == []
        if where == "reject_file":
            checked = subprocess.run(
                [sys.executable, "-m", "arrowbulk.cli", "validate", "job.yml"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
            )
            assert checked.returncode == 2
            assert "out.reject_file: cannot write in" in checked.stderr


def test_summary_json_into_a_missing_folder_is_created(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_job(tmp_path, sandbox.url)
        job = start(tmp_path, "--summary-json", "new/folder/s.json")
        _, err = job.communicate(timeout=60)
    assert job.returncode == 0, err
    assert json.loads((tmp_path / "new/folder/s.json").read_text())["status"] == "success"


def test_a_query_spooled_for_a_resume_on_a_full_disk_stops_before_sending(
    tmp_path: Path, disk: Path, cli
) -> None:
    # --resume keeps the query's spool beside the state (here on a 1 MiB tmpfs): a result
    # that does not fit stops the job with the folder and the fix, before any request. The
    # same job without --resume holds so small a spool in memory and needs no disk.
    import random

    pick = random.Random(5)
    rows = 30_000  # ~2 MB of random text: more than the tmpfs holds, even compressed
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    noise = ["".join(pick.choices(letters, k=64)) for _ in range(rows)]
    table = pa.table({"uuid": [f"u{i}" for i in range(rows)], "name": noise})
    pq.write_table(table, tmp_path / "users.parquet")
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        job = write_insider_job(
            tmp_path,
            sandbox.url,
            "users.parquet",
            source={"type": "sql", "query": "SELECT * FROM 'users.parquet'"},
            exec_config={"spool_dir": str(disk)},
        )
        result = cli("run", job, "--no-progress", "--resume", disk / "state.json")
        assert result.code == 1, result.err
        assert f"cannot write the input's spool in {disk / 'state.json.spool'}" in result.err
        assert "free space there or set exec.spool_dir" in result.err
        assert sandbox.requests == []
        result = cli("run", job, "--no-progress")
        assert result.code == 0, result.err
        assert accepted_by_sandbox(sandbox) == rows
