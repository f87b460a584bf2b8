"""Only clean successes count: a server that answers wrongly, slowly, hugely, with a redirect or
an untrusted certificate never gets records counted accepted, and configuration errors stop the
job at once. Real HTTP on loopback (pytest-httpserver)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

UPSERT = "/api/user/v1/upsert"


def users(rows: int = 3) -> pa.Table:
    return pa.table(
        {"uuid": [f"u{i}" for i in range(rows)], "name": [f"n{i}" for i in range(rows)]}
    )


def endpoint(server: HTTPServer) -> str:
    return server.url_for("").rstrip("/")


def add_up(run) -> bool:
    rows = run.rows
    return rows["read"] == rows["accepted"] + rows["rejected"] + rows["unsent"]


NOT_INSIDER = {
    "HTML": ("<html><body>Welcome to nginx!</body></html>", "text/html"),
    "unknown JSON": (json.dumps({"ok": True}), "application/json"),
    "fail count without user keys": (
        json.dumps({"data": {"successful": {"count": 2}, "fail": {"count": 1}}}),
        "application/json",
    ),
    "failures naming no user": (
        json.dumps(
            {"data": {"successful": {"count": 2}, "fail": {"count": 1, "errors": {"x.1": ["?"]}}}}
        ),
        "application/json",
    ),
    "counts that do not add up": (
        json.dumps({"data": {"successful": {"count": 1}, "fail": {}}}),
        "application/json",
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_INSIDER))
def test_a_200_that_is_not_insiders_answer_is_retried_then_unsent(
    run_insider, httpserver: HTTPServer, name: str
) -> None:
    body, content_type = NOT_INSIDER[name]
    httpserver.expect_request(UPSERT).respond_with_data(body, content_type=content_type)
    run = run_insider(users(), endpoint=endpoint(httpserver), max_retries=2)
    assert run.code == 1
    assert run.rows["accepted"] == 0 and run.rows["unsent"] == 3, run.rows
    assert add_up(run)
    assert "gave up after 3 attempts" in run.err and "HTTP 200 with" in run.err
    assert run.summary["details"]["retries"] == 2
    assert len(httpserver.log) == 3


def test_a_clean_answer_with_mapped_failures_still_counts(run_insider, httpserver) -> None:
    answer = {
        "data": {
            "successful": {"count": 2},
            "fail": {"count": 1, "errors": {"users.1.identifiers": ["bad"]}},
        }
    }
    httpserver.expect_request(UPSERT).respond_with_json(answer)
    run = run_insider(users(), endpoint=endpoint(httpserver), skip_invalid_records=True)
    assert run.code == 0, run.err
    assert (run.rows["accepted"], run.rows["rejected"]) == (2, 1)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_stops_the_job_and_is_never_followed(
    run_insider, httpserver: HTTPServer, status: int
) -> None:
    httpserver.expect_request(UPSERT).respond_with_data(
        "", status=status, headers={"Location": "http://127.0.0.1:9/elsewhere"}
    )
    run = run_insider(users(), endpoint=endpoint(httpserver), max_retries=3)
    assert run.code == 1
    assert f"answered HTTP {status} (a redirect to http://127.0.0.1:9/elsewhere)" in run.err
    assert "out.endpoint" in run.err
    assert len(httpserver.log) == 1
    assert run.rows["accepted"] == 0 and add_up(run)


def test_a_404_on_a_bulk_endpoint_stops_the_job(run_insider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(UPSERT).respond_with_data("<h1>Not Found</h1>", status=404)
    run = run_insider(users(), endpoint=endpoint(httpserver), skip_invalid_records=True)
    assert run.code == 1
    assert f"POST {endpoint(httpserver)}{UPSERT} answered HTTP 404" in run.err
    assert run.rows["rejected"] == 0 and run.rows["unsent"] == 3
    assert len(httpserver.log) == 1


def test_a_huge_answer_is_not_read_whole(run_insider, httpserver: HTTPServer) -> None:
    httpserver.expect_request(UPSERT).respond_with_data(b"x" * (40 * 2**20))
    run = run_insider(
        users(), endpoint=endpoint(httpserver), max_retries=1, max_response_bytes=2**20
    )
    assert run.code == 1
    assert "longer than out.max_response_bytes (1,048,576)" in run.err
    assert run.rows["accepted"] == 0 and add_up(run)
    assert run.summary["details"]["retries"] == 1


def test_a_trickling_answer_is_cut_at_the_request_deadline(run_insider, httpserver) -> None:
    def trickle(request: Request) -> Response:
        def drip() -> Iterator[bytes]:
            for _ in range(200):
                yield b" "
                time.sleep(0.5)

        return Response(drip(), status=200, content_type="application/json")

    httpserver.expect_request(UPSERT).respond_with_handler(trickle)
    started = time.monotonic()
    run = run_insider(
        users(), endpoint=endpoint(httpserver), max_retries=0, read_timeout=2, request_deadline=2
    )
    took = time.monotonic() - started
    assert run.code == 1
    assert "within out.request_deadline" in run.err
    assert took < 6, f"one attempt took {took:.1f}s"
    assert run.rows["accepted"] == 0 and add_up(run)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(certificate_authority: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def test_an_untrusted_certificate_stops_the_job_without_retries(run_insider, tls_server) -> None:
    tls_server.expect_request(UPSERT).respond_with_json({"data": {}})
    run = run_insider(users(), endpoint=endpoint(tls_server), max_retries=5)
    assert run.code == 1
    assert "TLS failed" in run.err and "out.ca_file" in run.err
    assert run.summary["details"].get("retries", 0) == 0
    assert run.rows["accepted"] == 0 and add_up(run)


def test_ca_file_trusts_a_private_ca(
    run_insider, tls_server, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca))
    answer = {"data": {"successful": {"count": 3}, "fail": {}}}
    tls_server.expect_request(UPSERT).respond_with_json(answer)
    run = run_insider(users(), endpoint=endpoint(tls_server), ca_file=str(ca))
    assert run.code == 0, run.err
    assert run.rows["accepted"] == 3
