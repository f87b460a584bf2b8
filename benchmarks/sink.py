"""A fast loopback HTTP sink that checks every record arrives exactly once.

It answers like Insider (HTTP 200, ``data.successful.count``) and counts the user ids in each
body with one regular expression over the bytes, so it costs the exporter little CPU. Runs in
its own process: ``python benchmarks/sink.py PORT_FILE KEY [LATENCY_MS]``, KEY being the JSON
key whose string values identify a record (``uuid`` for users, ``event_group_id`` for events);
LATENCY_MS makes every answer wait that long (±20% jitter), like an API far away.
"""

from __future__ import annotations

import random
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ID = re.compile(rb'"uuid":"([^"]+)"')  # replaced by the key named on the command line
LATENCY = 0.0  # seconds each answer waits


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    seen: dict[bytes, int] = {}
    requests = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ids = ID.findall(body)
        Sink.requests += 1
        for key in ids:
            Sink.seen[key] = Sink.seen.get(key, 0) + 1
        users = body.count(b'"identifiers"')
        if LATENCY:
            time.sleep(LATENCY * random.uniform(0.8, 1.2))
        self._answer(b'{"data":{"successful":{"count":%d},"fail":{}}}' % users)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            seen = Sink.seen
            dupes = sum(1 for c in seen.values() if c > 1)
            self._answer(
                b'{"requests":%d,"distinct":%d,"duplicates":%d}' % (Sink.requests, len(seen), dupes)
            )
        elif self.path == "/_reset":
            Sink.seen, Sink.requests = {}, 0
            self._answer(b"{}")

    def _answer(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    global ID, LATENCY
    ID = re.compile(b'"' + sys.argv[2].encode() + rb'"\s*:\s*"([^"]+)"')
    LATENCY = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0
    # The listen backlog is set when the server starts listening, in the constructor: a
    # class attribute. Python's default of 5 drops connections a wide window opens at once,
    # and each dropped SYN costs the client a 1 s retransmit.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    Path(sys.argv[1]).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
