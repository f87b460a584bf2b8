"""``arrowbulk insider-sandbox``: serve the sandbox, or run a job against it and stop."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from arrowbulk import Command
from arrowbulk.plugins.insider.sandbox import Faults, InsiderSandbox

SANDBOX_PARTNER = "sandbox"
SANDBOX_KEY = "sandbox-api-key"  # not a secret: the sandbox's own demo key


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "serve a local Insider API stand-in on 127.0.0.1 (with --run: run a job against it and "
        "stop). Besides Insider's endpoints it answers, as JSON: GET /_sandbox/profiles "
        "(every profile it holds: identifiers, attributes, events), /_sandbox/events (every "
        "event with its user's identifiers), /_sandbox/requests (the request log: method, "
        "path, bytes, time, status, body) and /_sandbox/stats (requests by status, peak "
        "concurrent requests, profiles)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)"
    )
    parser.add_argument("--partner", default=SANDBOX_PARTNER, help="the partner name it accepts")
    parser.add_argument("--api-key", default=SANDBOX_KEY, help="the token it accepts")
    parser.add_argument(
        "--run",
        type=Path,
        metavar="JOB.yml",
        help="run this job against the sandbox, then stop; "
        "the job sees INSIDER_ENDPOINT, INSIDER_PARTNER_NAME and INSIDER_API_KEY",
    )
    parser.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="with --run: write the summary as JSON"
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="N",
        help="answer the first N requests with --fail-status",
    )
    faults.add_argument("--fail-status", type=int, default=500)
    faults.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="answer this share of requests with --fail-status",
    )
    faults.add_argument(
        "--rate-limit-first",
        type=int,
        default=0,
        metavar="N",
        help="answer the first N requests with 429",
    )
    faults.add_argument(
        "--retry-after", metavar="SECONDS", help="the Retry-After header of those 429s"
    )
    faults.add_argument(
        "--drop-first",
        type=int,
        default=0,
        metavar="N",
        help="drop the first N connections unanswered",
    )
    faults.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="wait before every answer"
    )


def _run(args: argparse.Namespace) -> int:
    faults = Faults(
        fail_first=args.fail_first,
        fail_status=args.fail_status,
        fail_rate=args.fail_rate,
        rate_limit_first=args.rate_limit_first,
        retry_after=args.retry_after,
        drop_first=args.drop_first,
        delay_seconds=args.delay,
    )
    with InsiderSandbox(args.port, args.partner, args.api_key, faults) as sandbox:
        if args.run is None:
            print(
                f"Insider sandbox on {sandbox.url} (partner {args.partner!r}, token {args.api_key!r}); Ctrl-C stops it"
            )
            sys.stdout.flush()
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        return _run_job(args, sandbox)


def _run_job(args: argparse.Namespace, sandbox: InsiderSandbox) -> int:
    from arrowbulk.cli import main  # the CLI imports this module; import it late

    os.environ.update(
        INSIDER_ENDPOINT=sandbox.url,
        INSIDER_PARTNER_NAME=args.partner,
        INSIDER_API_KEY=args.api_key,
    )
    print(f"Insider sandbox on {sandbox.url}; running {args.run}\n")
    command = ["run", str(args.run), "--no-progress"]
    if args.summary_json:
        command += ["--summary-json", str(args.summary_json)]
    code = main(command, args.registry)  # the plugins this process loaded already
    profiles = sandbox.profiles()
    requests = sandbox.requests
    print(
        f"\nThe sandbox answered {len(requests)} request(s) and now holds {len(profiles)} profile(s)."
    )
    return code


SANDBOX_COMMANDS = [
    Command(
        "insider-sandbox",
        "serve a local Insider API stand-in on 127.0.0.1 (with --run: run a job against it and stop)",
        _configure,
        _run,
    )
]
