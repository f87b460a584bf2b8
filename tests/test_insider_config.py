"""The connector's settings: TD's JSON verbatim, YAML, errors with key paths, secrets kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import API_KEY, PARTNER, bodies

from arrowbulk.plugins.insider.sandbox import InsiderSandbox

# The three examples of the seed page's CLI section, verbatim.
SEED_ATTRIBUTES = '{"type":"insider","api_key":"api_key","partner_name":"partner_name","export_mode":"USER_ATTRIBUTES","attribute_operation":"UPSERT","custom_identifier_fields":"custom_identifier_1,custom_identifier_2","trigger_data_stream":false,"skip_invalid_records":false}'
SEED_EVENTS = '{"type":"insider","api_key":"api_key","partner_name":"partner_name","export_mode":"USER_EVENTS","custom_identifier_fields":"custom_identifier_1,custom_identifier_2","trigger_data_stream":false,"skip_invalid_records":false}'
SEED_AUDIENCES = '{"type":"insider","api_key":"api_key","partner_name":"partner_name","export_mode":"USER_AUDIENCES","audience_operation":"APPEND","custom_identifier_fields":"custom_identifier_1,custom_identifier_2","trigger_data_stream":false,"skip_invalid_records":false}'

IDS = "uuid AS custom_identifier_1, 'crm-' || uuid AS custom_identifier_2"
SEED_CASES = [
    (SEED_ATTRIBUTES, f"SELECT {IDS}, name, tier FROM users", "attributes"),
    (
        SEED_EVENTS,
        f"SELECT {IDS}, 'homepage_view' AS event_name, now() AS timestamp FROM users",
        "events",
    ),
    (
        SEED_AUDIENCES,
        f"SELECT {IDS}, [1, 2] AS td_audience_id, ['A', 'B'] AS td_audience_name FROM users",
        "attributes",
    ),
]


@pytest.fixture
def td_sandbox(monkeypatch: pytest.MonkeyPatch):
    with InsiderSandbox(partner="partner_name", api_key="api_key") as server:
        monkeypatch.setenv("INSIDER_ENDPOINT", server.url)
        yield server


@pytest.mark.parametrize(
    ("result", "sql", "part"), SEED_CASES, ids=["attributes", "events", "audiences"]
)
def test_the_seed_cli_json_is_accepted_verbatim(
    cli, td_sandbox, tmp_path: Path, monkeypatch, result, sql, part
) -> None:
    users = tmp_path / "users.parquet"
    pq.write_table(
        pa.table({"uuid": ["u1", "u2"], "name": ["Ada", "Grace"], "tier": ["gold", None]}), users
    )
    monkeypatch.chdir(tmp_path)
    run = cli("query", "--file", users, sql, "--result", result, "--no-progress")
    assert run.code == 0, run.err
    assert "rows read                 2" in run.out and "accepted                  2" in run.out
    users_sent = bodies(td_sandbox)[0]["users"]
    assert users_sent[0]["identifiers"] == {
        "custom": {"custom_identifier_1": "u1", "custom_identifier_2": "crm-u1"}
    }
    assert part in users_sent[0]
    assert bodies(td_sandbox)[0]["skip_hook"] is True  # trigger_data_stream: false
    assert all(r["status"] == 200 for r in td_sandbox.requests)


def test_query_with_a_missing_custom_identifier_column_names_it(
    cli, td_sandbox, tmp_path: Path
) -> None:
    users = tmp_path / "users.parquet"
    pq.write_table(pa.table({"uuid": ["u1"], "name": ["Ada"]}), users)
    run = cli("query", "--file", users, "SELECT * FROM users", "--result", SEED_ATTRIBUTES)
    assert run.code == 2
    assert "custom_identifier_fields names custom_identifier_1, custom_identifier_2" in run.err
    assert td_sandbox.requests == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"export_mode": "USER_ATTRIBUTE"},
            "out.export_mode: 'USER_ATTRIBUTE' is not one of ['USER_ATTRIBUTES', 'USER_EVENTS', 'USER_AUDIENCES']",
        ),
        ({"attribute_operation": "UPSERTS"}, "out.attribute_operation: 'UPSERTS' is not one of"),
        ({"custom_identifier_fields": "a, b"}, "out.custom_identifier_fields"),
        (
            {"max_records_per_request": 1001},
            "out.max_records_per_request: 1001 is greater than the maximum of 1000",
        ),
        (
            {"max_request_bytes": 10**9},
            "out.max_request_bytes: 1000000000 is greater than the maximum of 5000000",
        ),
        ({"read_timeout": -1}, "out.read_timeout: -1 is less than or equal to the minimum of 0"),
        (
            {"max_batch_wait_seconds": 601},
            "out.max_batch_wait_seconds: 601 is greater than the maximum of 600",
        ),
        (
            {"endpoint": "http://insider.example.com"},
            "out.endpoint: plain http:// to insider.example.com would send the API key unencrypted",
        ),
        ({"skip_invalid_record": True}, "'skip_invalid_record' was unexpected"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(run_insider, sandbox, change, expected) -> None:
    run = run_insider(pa.table({"uuid": ["u1"], "name": ["Ada"]}), **change)
    assert run.code == 2, run.out
    assert expected in run.err
    assert "Traceback" not in run.err
    assert sandbox.requests == []


def test_api_key_may_come_from_the_environment(cli, sandbox, tmp_path: Path, monkeypatch) -> None:
    pq.write_table(pa.table({"uuid": ["u1"], "name": ["Ada"]}), tmp_path / "u.parquet")
    job = tmp_path / "job.yml"
    job.write_text(
        f"in: {{type: file, path: u.parquet}}\nout: {{type: insider, partner_name: {PARTNER}, endpoint: '{sandbox.url}'}}\n"
    )
    assert "out.api_key: required" in cli("run", job).err
    monkeypatch.setenv("INSIDER_API_KEY", API_KEY)
    assert cli("run", job, "--no-progress").code == 0
    assert len(bodies(sandbox)) == 1


def test_a_wrong_key_stops_at_once_and_the_key_appears_nowhere(tmp_path: Path) -> None:
    secret = "wrong-key-5c1d8e0b9a"
    with InsiderSandbox(partner=PARTNER, api_key=API_KEY) as server:
        pq.write_table(
            pa.table({"uuid": [f"u{i}" for i in range(3000)], "name": ["x"] * 3000}),
            tmp_path / "u.parquet",
        )
        (tmp_path / "job.yml").write_text(
            "in: {type: file, path: u.parquet}\n"
            f"out: {{type: insider, api_key: '{secret}', partner_name: {PARTNER}, endpoint: '{server.url}',"
            " max_records_per_request: 100, max_requests_in_flight: 1, reject_file: rejects.jsonl}\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "arrowbulk.cli",
                "-v",
                "-v",
                "run",
                "job.yml",
                "--summary-json",
                "summary.json",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        sent = len(server.requests)
    assert done.returncode == 1
    assert "check out.api_key (a UCD API key) and out.partner_name" in done.stderr
    assert sent == 1  # nothing more after the 403
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (
        summary["rows"]["read"]
        == summary["rows"]["accepted"] + summary["rows"]["rejected"] + summary["rows"]["unsent"]
    )
    assert summary["rows"]["accepted"] == 0
    outputs = [
        done.stdout,
        done.stderr,
        *(
            p.read_text(errors="replace")
            for p in tmp_path.iterdir()
            if p.name not in {"u.parquet", "job.yml"}
        ),
    ]
    assert len(outputs) >= 3  # stdout, stderr, the summary (and the reject file, if any)
    assert all(secret not in text for text in outputs)


def test_the_secret_is_hidden_in_reprs(sandbox, tmp_path: Path) -> None:
    from arrowbulk import RunContext
    from arrowbulk.config import validate_section
    from arrowbulk.plugins.insider.config import resolve
    from arrowbulk.plugins.insider.output import InsiderOutput

    config = validate_section(
        "out",
        {"type": "insider", "api_key": API_KEY, "partner_name": PARTNER, "endpoint": sandbox.url},
        InsiderOutput.config_schema(),
    )
    task = resolve(config, RunContext("r", tmp_path))
    assert API_KEY not in repr(config) and API_KEY not in repr(task) and API_KEY not in str(config)
