"""only_changed: a daily job sends only the users whose object changed since Insider last
acknowledged it; a crash never hides a change; removed users are reported, never deleted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from helpers import API_KEY, PARTNER

from arrowbulk.plugins.insider.sandbox import InsiderSandbox


def write_users(folder: Path, names: dict[int, str]) -> None:
    pq.write_table(
        pa.table(
            {
                "uuid": [f"u{i:05d}" for i in names],
                "email": [f"user{i}@example.com" for i in names],
                "name": list(names.values()),
            }
        ),
        folder / "users.parquet",
    )


def write_job(folder: Path, url: str, **out: Any) -> Path:
    config = {
        "in": {"type": "file", "path": "users.parquet"},
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": url,
            "only_changed": True,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.02,
            **out,
        },
    }
    path = folder / "job.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


#: The job in folder, in a process of its own (a test kills one with SIGKILL).
RUN = [sys.executable, "-m", "arrowbulk.cli", "run", "job.yml", "--no-progress"]


def run(folder: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [*RUN, "--summary-json", "s.json", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = json.loads((folder / "s.json").read_text()) if (folder / "s.json").exists() else {}
    return done.returncode, summary, done.stderr


def sent(sandbox: InsiderSandbox) -> Counter[str]:
    return Counter(
        u["identifiers"]["uuid"]
        for r in sandbox.requests
        if "body" in r
        for u in r["body"]["users"]
    )


USERS = 2000


def test_all_then_one_percent_then_nothing(tmp_path: Path) -> None:
    names = {i: f"n{i}" for i in range(USERS)}
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_users(tmp_path, names)
        write_job(tmp_path, sandbox.url)
        code, first, err = run(tmp_path)
        assert code == 0, err
        assert sum(sent(sandbox).values()) == USERS
        assert first["details"]["only_changed"]["fingerprints_stored"] == USERS

        changed = range(0, USERS, 100)  # 1%
        names.update({i: f"renamed{i}" for i in changed})
        write_users(tmp_path, names)
        before = sent(sandbox)
        code, second, err = run(tmp_path)
        assert code == 0, err
        assert sent(sandbox) - before == Counter(f"u{i:05d}" for i in changed)
        assert second["rows"]["accepted"] == USERS  # sent or already held: all accounted
        assert second["details"]["unchanged"] == USERS - len(changed)

        before = sent(sandbox)
        code, third, err = run(tmp_path)
        assert code == 0, err
        assert sent(sandbox) - before == Counter()  # nothing changed: nothing sent
        assert third["details"]["unchanged"] == USERS
        held = {p["identifiers"]["uuid"]: p["attributes"]["name"] for p in sandbox.profiles()}
    assert held == {f"u{i:05d}": name for i, name in names.items()}


def test_a_crash_never_hides_a_change(tmp_path: Path) -> None:
    names = {i: f"n{i}" for i in range(USERS)}
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_users(tmp_path, names)
        write_job(tmp_path, sandbox.url, max_records_per_request=5, max_requests_in_flight=1)
        assert run(tmp_path)[0] == 0

        changed = range(0, USERS, 20)  # 5%: 100 users, 20 requests
        names.update({i: f"renamed{i}" for i in changed})
        write_users(tmp_path, names)
        sandbox.set_faults(delay_seconds=0.1)
        before = sum(sent(sandbox).values())
        process = subprocess.Popen(
            [*RUN, "--resume", "day2.json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while sum(sent(sandbox).values()) - before < 25 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-run: some changes sent, none recorded
        process.communicate(timeout=30)
        sandbox.set_faults(delay_seconds=0.0)
        sent_before_crash = sum(sent(sandbox).values()) - before
        assert 0 < sent_before_crash < len(changed)

        code, _, err = run(tmp_path, "--resume", "day2.json")  # the resume finishes the run
        assert code == 0, err
        code, third, err = run(tmp_path)  # the next day's run
        assert code == 0, err
        held = {p["identifiers"]["uuid"]: p["attributes"]["name"] for p in sandbox.profiles()}
        # Every change is at Insider; those sent before the crash were not fingerprinted, so
        # the third run sent them again (a resend, never a miss).
        assert held == {f"u{i:05d}": name for i, name in names.items()}
        assert 0 < USERS - third["details"]["unchanged"] <= sent_before_crash


def test_removed_users_are_reported_not_deleted(tmp_path: Path) -> None:
    names = {i: f"n{i}" for i in range(10)}
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_users(tmp_path, names)
        write_job(tmp_path, sandbox.url, removed_file="removed.jsonl")
        assert run(tmp_path)[0] == 0
        del names[3], names[7]
        write_users(tmp_path, names)
        code, summary, err = run(tmp_path)
        assert code == 0, err
        assert summary["details"]["only_changed"]["removed"] == 2
        lines = [json.loads(x) for x in (tmp_path / "removed.jsonl").read_text().splitlines()]
        assert sorted(lines, key=lambda x: x["uuid"]) == [
            {"uuid": "u00003", "email": "user3@example.com"},
            {"uuid": "u00007", "email": "user7@example.com"},
        ]
        assert not any(r["path"].endswith(("/identity", "/delete")) for r in sandbox.requests)
        code, summary, err = run(tmp_path)
        assert summary["details"]["only_changed"]["removed"] == 0  # reported once


def test_full_and_another_scope_send_everything(tmp_path: Path) -> None:
    names = {i: f"n{i}" for i in range(10)}
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as sandbox:
        write_users(tmp_path, names)
        write_job(tmp_path, sandbox.url)
        assert run(tmp_path)[0] == 0
        before = sum(sent(sandbox).values())
        code, summary, _ = run(tmp_path, "--full")
        assert code == 0 and sum(sent(sandbox).values()) - before == 10
        assert "--full" in summary["details"]["only_changed"]["note"]

        # Another set of columns is another scope: its store starts empty, and says so.
        pq.write_table(
            pq.read_table(tmp_path / "users.parquet")
            .drop(["name"])
            .append_column("city", pa.array(["x"] * 10)),
            tmp_path / "users.parquet",
        )
        before = sum(sent(sandbox).values())
        code, summary, _ = run(tmp_path)
        assert code == 0 and sum(sent(sandbox).values()) - before == 10
        assert "another scope" in summary["details"]["only_changed"]["note"]


def test_only_changed_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    write_users(tmp_path, {0: "a"})
    pq.write_table(
        pa.table(
            {"uuid": ["u"], "event_name": ["page_view"], "timestamp": ["2026-11-29T00:00:00Z"]}
        ),
        tmp_path / "users.parquet",
    )
    write_job(tmp_path, "http://127.0.0.1:9", export_mode="USER_EVENTS")
    code, _, err = run(tmp_path)
    assert code == 2
    assert "out.only_changed: USER_EVENTS does not send users' attributes" in err


def test_the_store_adds_small_changes_as_deltas_and_merges_them(tmp_path: Path) -> None:
    import numpy as np

    from arrowbulk.plugins.insider.fingerprints import MAX_DELTAS, FingerprintStore

    path = tmp_path / "fp.parquet"
    scope = {"partner": "p"}
    ids = pa.table({"uuid": [f"u{i}" for i in range(1000)]})
    keys = np.arange(1000, dtype=np.uint64) * 7919

    def day(values: np.ndarray, users: slice) -> FingerprintStore:
        store = FingerprintStore(path, scope, full=False)
        store.unchanged(keys, values)  # the lookup marks every stored user as seen
        store.acknowledged(
            keys[users], values[users], ids.slice(users.start, users.stop - users.start)
        )
        store.write(complete=True, removed_file=None)
        return FingerprintStore(path, scope, full=False)

    values = np.arange(1000, dtype=np.uint64)
    day(values, slice(0, 1000))
    deltas = lambda: sorted(p.name for p in tmp_path.glob("fp.parquet.g*.delta-*"))  # noqa: E731
    assert deltas() == []
    for n in range(MAX_DELTAS):
        values = values.copy()
        values[n] += 1000  # one user changed a day: a small delta each time
        store = day(values, slice(n, n + 1))
        assert len(deltas()) == n + 1
        assert store.unchanged(keys, values).all()  # base + deltas: the newest wins
    store = day(values, slice(0, 1))  # one more: the deltas are merged into the base
    assert deltas() == [] and store.unchanged(keys, values).all()

    # A delta of an older generation (left by a crash mid-merge) is never read.
    stale = tmp_path / "fp.parquet.g1.delta-0.parquet"
    pq.write_table(pa.table({"key": pa.array(keys[:1]), "value": pa.array([np.uint64(99)])}), stale)
    assert FingerprintStore(path, scope, full=False).unchanged(keys, values).all()


def test_lookups_by_bucket_agree_with_a_binary_search(tmp_path: Path) -> None:
    import numpy as np

    from arrowbulk.plugins.insider.fingerprints import FingerprintStore

    rng = np.random.default_rng(7)
    for keys in (
        rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64) * np.uint64(2),
        np.arange(50_000, dtype=np.uint64),  # all in one bucket: the binary search takes over
    ):
        keys = np.unique(keys)
        values = rng.integers(0, 2**63, len(keys), dtype=np.int64).astype(np.uint64)
        store = FingerprintStore(tmp_path / "none.parquet", {}, full=False)
        store.keys, store.values, store._index = keys, values, None
        store._seen = np.zeros(len(keys), dtype=bool)
        asked = np.concatenate([rng.choice(keys, 5000), keys[:10] + np.uint64(1)])
        told = values[np.searchsorted(keys, asked).clip(0, len(keys) - 1)].copy()
        told[::7] += np.uint64(1)  # some changed
        expected = store._unchanged_by_search(asked, told)
        assert (store.unchanged(asked, told) == expected).all()
        assert expected.any() and not expected.all()
