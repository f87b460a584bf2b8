"""An API key never appears in any text arrowbulk writes, whatever characters it holds, even
when the server echoes it back (raw or escaped) in its refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest
import yaml
from pytest_httpserver import HTTPServer

from arrowbulk.secret import text_forms

KEYS = {
    "quote": 'sk-"quoted"-7f3a9c2e',
    "backslash": "sk-back\\slash-7f3a9c2e",
    "dollar": "sk-$dollar$-7f3a9c2e",
    "newline": "sk-trailing-newline-7f3a9c2e\n",
}


def leaks(key: str, text: str) -> list[str]:
    forms = text_forms(key) | text_forms(key.strip()) | {key, key.strip()}
    return sorted(form for form in forms if len(form) >= 8 and form in text)


def run_against(tmp_path: Path, url: str, key: str, *flags: str) -> tuple[int, str]:
    feather.write_feather(
        pa.table({"uuid": ["u1", "u2"], "name": ["a", "b"]}), tmp_path / "u.arrow"
    )
    job = {
        "in": {"type": "file", "path": "u.arrow"},
        "out": {
            "type": "insider",
            "api_key": "${INSIDER_API_KEY}",
            "partner_name": "acme",
            "endpoint": url,
            "reject_file": "rejects.jsonl",
            "max_retries": 0,
        },
    }
    (tmp_path / "job.yml").write_text(yaml.safe_dump(job))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "arrowbulk.cli",
            *flags,
            "run",
            "job.yml",
            "--no-progress",
            "--summary-json",
            "summary.json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"INSIDER_API_KEY": key, "PATH": "/usr/bin:/bin", "ARROWBULK_PLUGINS": "file,insider"},
        timeout=60,
    )
    written = "".join(p.read_text() for p in tmp_path.iterdir() if p.suffix in {".json", ".jsonl"})
    return result.returncode, result.stdout + result.stderr + written


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("echo", ["json", "text", "repr"])
@pytest.mark.parametrize("flags", [(), ("-vv", "--debug")])
def test_a_key_echoed_by_the_server_never_reaches_any_output(
    tmp_path: Path, httpserver: HTTPServer, name: str, echo: str, flags: tuple[str, ...]
) -> None:
    key = KEYS[name]
    sent = key.strip()  # surrounding white space is removed before sending
    if echo == "json":
        body = json.dumps({"success": False, "message": f"Access Denied for token {sent}"})
    elif echo == "text":
        body = f"<html>denied: {sent}</html>"
    else:
        body = f"denied: {sent!r} / {json.dumps(sent)}"
    httpserver.expect_request("/api/user/v1/upsert").respond_with_data(body, status=403)
    code, everything = run_against(tmp_path, httpserver.url_for(""), key, *flags)
    assert code == 1
    assert "Insider refused the credentials" in everything
    assert leaks(key, everything) == []
    if name == "newline":
        assert "removed white space around the value" in everything
    request = httpserver.log[0][0]
    assert request.headers["X-REQUEST-TOKEN"] == sent


@pytest.mark.parametrize(
    "key", ["sk-ünïcode-7f3a9c2e", "sk-inner\nnewline-7f3a9c2e", "sk-tab\there-7f3a9c2e"]
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_unseen(
    tmp_path: Path, httpserver: HTTPServer, key: str
) -> None:
    code, everything = run_against(tmp_path, httpserver.url_for(""), key)
    assert code == 2
    assert "out.api_key" in everything and "value hidden" in everything
    assert leaks(key, everything) == []
    assert httpserver.log == []


def test_a_literal_key_in_the_result_json_is_warned_of(tmp_path: Path, cli) -> None:
    result = json.dumps(
        {
            "type": "insider",
            "api_key": "sk-literal-7f3a9c2e",
            "partner_name": "a",
            "endpoint": "http://127.0.0.1:9",  # nothing listens: the warning comes first
            "max_retries": 0,
        }
    )
    outcome = cli("query", "SELECT 'u1' AS uuid, 'n' AS name", "--result", result, "--no-progress")
    assert "other users can read it in the process list" in outcome.err
    assert "sk-literal-7f3a9c2e" not in outcome.out + outcome.err
