"""Resume does not depend on row order; one runner per state; tampered states are refused.

A query without a total order returns its rows in another order each run. The job spools the
result once, and every resume reads the spool, so skipping settled rows by position skips the
right rows.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import API_KEY, PARTNER, bodies

from arrowbulk.plugins.insider.sandbox import InsiderSandbox

USERS = 10_000
IN_FLIGHT = 2
PER_REQUEST = 50
#: ORDER BY random(): every run of the query returns the rows in another order, for sure.
QUERY = "SELECT uuid, name FROM 'users.parquet' ORDER BY random()"


def write_sql_job(folder: Path, url: str, users: int = USERS) -> None:
    if not (folder / "users.parquet").exists():
        table = pa.table(
            {"uuid": [f"u{i:05d}" for i in range(users)], "name": [f"n{i}" for i in range(users)]}
        )
        pq.write_table(table, folder / "users.parquet")
    config = {
        "in": {"type": "sql", "query": QUERY},
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": url,
            "max_records_per_request": PER_REQUEST,
            "max_requests_in_flight": IN_FLIGHT,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.02,
        },
    }
    (folder / "job.yml").write_text(yaml.safe_dump(config))


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "arrowbulk.cli", "run", "job.yml", "--no-progress", *args]
    return subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def delivered(sandbox: InsiderSandbox) -> Counter[str]:
    return Counter(u["identifiers"]["uuid"] for body in bodies(sandbox) for u in body["users"])


def test_a_query_in_random_order_resumed_after_20_kills_delivers_every_user(tmp_path: Path) -> None:
    chance = random.Random(20261129)
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=0.1)  # ~1,000 users/s: sending lasts about 10 s
        write_sql_job(tmp_path, sandbox.url)
        kills, bounds = 0, []
        for _attempt in range(60):
            process = start(tmp_path, "--resume", "state.json", "--summary-json", "s.json")
            if kills < 20:
                time.sleep(chance.uniform(0.2, 1.2))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.communicate(timeout=30)
                    kills += 1
                    continue
            _, err = process.communicate(timeout=120)
            summary = json.loads((tmp_path / "s.json").read_text())
            bounds.append(summary["details"].get("resume", {}).get("resent_at_most", 0))
            if process.returncode == 0:
                break
            assert process.returncode == 1, err
        else:
            pytest.fail("the job never completed")
        assert kills == 20
        counts = delivered(sandbox)
        # Values, not only identities: every profile holds its own source row's name.
        names = {p["identifiers"]["uuid"]: p["attributes"]["name"] for p in sandbox.profiles()}
    assert names == {f"u{i:05d}": f"n{i}" for i in range(USERS)}
    assert set(counts) == {f"u{i:05d}" for i in range(USERS)}, "a user was never delivered"
    duplicates = sum(counts.values()) - USERS
    print(
        f"\n20 kills: {duplicates} sent twice of {USERS}, bound {kills * IN_FLIGHT * PER_REQUEST}"
    )
    # Each crash resends at most what was in flight: the window, in rows.
    assert duplicates <= kills * IN_FLIGHT * PER_REQUEST, duplicates
    assert not (tmp_path / "state.json.spool").exists(), "the spool outlived the completed job"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["complete"] is True


def test_the_spool_lets_a_resume_skip_exactly_the_settled_rows(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_sql_job(tmp_path, sandbox.url, users=2000)
        sandbox.set_faults(healthy_requests=20)  # 1,000 users in, then an outage
        first = start(tmp_path, "--resume", "state.json", "--summary-json", "first.json")
        first.communicate(timeout=60)
        assert first.returncode == 1
        assert (tmp_path / "state.json.spool").is_dir(), "a failed job keeps its spool"
        sandbox.set_faults(healthy_requests=None)
        second = start(tmp_path, "--resume", "state.json", "--summary-json", "second.json")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        counts = delivered(sandbox)
    resume = json.loads((tmp_path / "second.json").read_text())["details"]["resume"]
    assert resume["skipped_rows"] >= 1000 - IN_FLIGHT * PER_REQUEST
    assert set(counts) == {f"u{i:05d}" for i in range(2000)}
    assert sum(counts.values()) - 2000 <= resume["resent_at_most"]


def test_a_second_run_on_the_same_state_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=0.05)
        write_sql_job(tmp_path, sandbox.url)
        first = start(tmp_path, "--resume", "state.json")
        try:
            deadline = time.monotonic() + 30
            while not bodies(sandbox) and time.monotonic() < deadline:
                time.sleep(0.05)
            second = start(tmp_path, "--resume", "state.json")
            _, err = second.communicate(timeout=60)
            assert second.returncode == 2
            assert f"process id {first.pid}" in err
            assert "Traceback" not in err and "internal error" not in err
        finally:
            first.kill()
            first.communicate()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda s: s.update(tasks=[1, 2]), "tasks must be a JSON object"),
        (
            lambda s: s["tasks"]["0"].update(settled="12"),
            "settled and in_doubt must be whole numbers",
        ),
        (lambda s: s.update(complete="yes"), "complete must be a JSON boolean"),
        (lambda s: s.update(version=1), "state version 1"),
    ],
)
def test_a_tampered_state_file_is_a_clear_error(tmp_path: Path, change, says: str, cli) -> None:
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_sql_job(tmp_path, sandbox.url)
        sandbox.set_faults(healthy_requests=2)
        assert (
            cli("run", tmp_path / "job.yml", "--no-progress", "--resume", tmp_path / "s").code == 1
        )
        state = json.loads((tmp_path / "s").read_text())
        change(state)
        (tmp_path / "s").write_text(json.dumps(state))
        result = cli("run", tmp_path / "job.yml", "--no-progress", "--resume", tmp_path / "s")
    assert result.code == 2
    assert says in result.err
    assert "internal error" not in result.err


def test_resent_at_most_is_the_true_bound(tmp_path: Path) -> None:
    from test_resume import write_job

    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        sandbox.set_faults(delay_seconds=30)  # the first request stays in flight
        write_job(tmp_path, sandbox.url, max_records_per_request=100, max_requests_in_flight=1)
        first = start(tmp_path, "--resume", "state.json")
        deadline = time.monotonic() + 30
        while not sandbox.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        first.kill()
        first.communicate()
        sandbox.set_faults(delay_seconds=0)
        second = start(tmp_path, "--resume", "state.json", "--summary-json", "s.json")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
    resume = json.loads((tmp_path / "s.json").read_text())["details"]["resume"]
    assert resume["skipped_rows"] == 0
    assert resume["resent_at_most"] == 100  # one request of 100 rows was out


def test_a_query_is_spooled_in_parts_that_threads_share_and_resume(
    tmp_path: Path, cli, monkeypatch
) -> None:
    from arrowbulk import spool

    monkeypatch.setattr(spool, "SPOOL_PART_ROWS", 700)  # 2,000 users: parts of 700, 700, 600
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_sql_job(tmp_path, sandbox.url, users=2000)
        sandbox.set_faults(healthy_requests=12)
        args = ["run", tmp_path / "job.yml", "--no-progress", "--resume", tmp_path / "state.json"]
        first = cli(*args, "--summary-json", tmp_path / "first.json")
        assert first.code == 1
        assert json.loads((tmp_path / "state.json").read_text())["spool"] == {
            "rows": [700, 700, 600]
        }
        sandbox.set_faults(healthy_requests=None)
        second = cli(*args, "--summary-json", tmp_path / "second.json")
        assert second.code == 0, second.err
        counts = delivered(sandbox)
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["tasks"] == 3
    assert set(counts) == {f"u{i:05d}" for i in range(2000)}
    assert sum(counts.values()) - 2000 <= summary["details"]["resume"]["resent_at_most"]


@pytest.mark.parametrize(
    ("memory_bytes", "files"),
    [(0, 3), (2**30, 0), (1, 3), (15_000, 3)],
    ids=["on disk", "in memory", "spilled at once", "spilled midway"],
)
def test_a_spool_holds_the_same_parts_in_memory_or_on_disk(
    tmp_path: Path, monkeypatch, memory_bytes: int, files: int
) -> None:
    from arrowbulk import spool as spool_module
    from arrowbulk.cancel import Cancellation
    from arrowbulk.plugins.sql.input import SqlInput
    from arrowbulk.spi import RunContext

    monkeypatch.setattr(spool_module, "SPOOL_PART_ROWS", 700)
    pq.write_table(
        pa.table({"n": list(range(2000)), "s": [f"v{i}" for i in range(2000)]}),
        tmp_path / "t.parquet",
    )
    source = SqlInput(
        {"type": "sql", "query": "SELECT * FROM 't.parquet' ORDER BY n", "batch_size": 300},
        RunContext("r", tmp_path),
    )
    spool = spool_module.Spool(tmp_path / "spool", memory_bytes)
    rows = spool.fill(source, Cancellation())
    assert rows == [700, 700, 600]
    assert len(list((tmp_path / "spool").glob("*.arrows"))) == files
    parts = [pa.Table.from_batches(list(spool.read(i)), source.schema()) for i in range(3)]
    assert pa.concat_tables(parts).column("n").to_pylist() == list(range(2000))
    spool.remove()
    assert not (tmp_path / "spool").exists()
