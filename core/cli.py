"""The ``arrowbulk`` command: a thin layer over :mod:`arrowbulk.runner`.

Exit codes: 0 success; 1 the job failed; 2 a usage or config error. An expected error prints
one message (never a traceback, unless ``--debug``); every message is scrubbed of secrets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from arrowbulk import __version__
from arrowbulk.api import run_pipeline
from arrowbulk.cancel import Cancellation, Interrupted
from arrowbulk.config import (
    PipelineConfig,
    load_pipeline_file,
    pipeline_from_mapping,
    secret_keys,
)
from arrowbulk.dryrun import render_dry_run
from arrowbulk.errors import ArrowbulkError, ConfigError
from arrowbulk.jsonable import NotJson, jsonable
from arrowbulk.progress import Progress
from arrowbulk.registry import Registry, load_registry
from arrowbulk.rejects import RejectWriter
from arrowbulk.retry import RejectsInput
from arrowbulk.runner import Job
from arrowbulk.secret import scrub, scrub_json
from arrowbulk.spi import DryRun
from arrowbulk.summary import JobSummary, aligned
from arrowbulk.writable import check_writable_folder

log = logging.getLogger("arrowbulk")

Handler = Callable[[argparse.Namespace], int]


def entry() -> None:
    """The console script: ``main()``, then exit even if a request is still out.

    After an interrupt the job reports requests unanswered past ``exec.shutdown_timeout`` as
    unsent and returns; their worker threads must not hold the process open, and Python's exit
    would join them. The state and summary are written by then.
    """
    code = main()
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    _choose_memory_pool()
    if registry is None:
        registry = load_registry()  # once per process: hooks fire once, warnings print once
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    args.registry = registry
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ArrowbulkError as error:
        if args.debug:
            _print_traceback()
        print(f"error: {scrub(str(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`arrowbulk preview job.yml | head`): stop quietly, as other
        # tools do; Python would otherwise complain once more when it flushes at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as error:
        if args.debug:
            _print_traceback()
        print(
            f"internal error (a bug in arrowbulk or a plugin): {scrub(repr(error))}\n"
            "rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 1


def _print_traceback() -> None:
    """--debug: the traceback, scrubbed like every other text (a key may sit in a local's repr)."""
    print(scrub(traceback.format_exc()), file=sys.stderr, end="")


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arrowbulk", description="Embulk-style bulk export of Arrow data."
    )
    parser.add_argument("--version", action="version", version=f"arrowbulk {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a pipeline")
    run.add_argument("config", type=Path, help="the pipeline's YAML file")
    _add_run_options(run)
    run.add_argument(
        "-c",
        "--config-diff",
        type=Path,
        metavar="DIFF.yml",
        help="Embulk's config diff: merged into the config when it exists; after a successful "
        "run the next one is written to it (e.g. an incremental input's last record); a "
        "failed run leaves it unchanged",
    )
    run.add_argument(
        "--full",
        action="store_true",
        help="ignore what change detection remembers (only_changed): send every record and "
        "refresh the store",
    )
    run.set_defaults(handler=_run)

    query = commands.add_parser(
        "query",
        help="run a SQL query on DuckDB and export its result, like td query --result",
        description="Example: arrowbulk query --file users.parquet 'SELECT * FROM users' "
        '--result \'{"type":"insider",...}\'',
    )
    query.add_argument("sql", help="the query; files given with --file are tables named after them")
    query.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="a file to query as a table named by its stem (users.parquet -> users); repeatable",
    )
    query.add_argument("--database", metavar="DB", help="a .duckdb file to query")
    query.add_argument(
        "--result",
        required=True,
        metavar="JSON",
        help="the output's settings as JSON, e.g. the TD connector's",
    )
    _add_run_options(query)
    query.set_defaults(handler=_query)

    retry = commands.add_parser(
        "retry",
        help="send the records of a reject file again, through a job's output",
        description="After fixing the cause, send the rejected records again with the job's "
        "output settings; records rejected again go to REJECTS.retry-<run id>.jsonl",
    )
    retry.add_argument("rejects", type=Path, help="the reject file (JSON Lines)")
    retry.add_argument(
        "--config", type=Path, required=True, metavar="JOB.yml", help="the job that wrote it"
    )
    retry.add_argument(
        "--run",
        action="append",
        metavar="RUN_ID",
        help="retry the records of this run (repeatable; 'all' for every run); needed when "
        "the file holds several runs",
    )
    _add_run_options(retry)
    retry.set_defaults(handler=_retry)

    preview = commands.add_parser("preview", help="show the input's schema and first rows")
    preview.add_argument("config", type=Path)
    preview.add_argument("--rows", type=int, default=10)
    preview.set_defaults(handler=_preview)

    validate = commands.add_parser(
        "validate", help="check config, schema and records; send nothing"
    )
    validate.add_argument("config", type=Path)
    validate.add_argument(
        "--rejects",
        type=Path,
        metavar="PATH",
        help="write every invalid record, with all the rules it breaks, to this JSON Lines file",
    )
    validate.add_argument(
        "--show-requests",
        type=int,
        default=0,
        metavar="N",
        help="print the first N request bodies exactly as they would be sent",
    )
    validate.add_argument(
        "--show-changes",
        type=int,
        default=0,
        metavar="N",
        help="print up to N examples per column of values normalization changes",
    )
    validate.set_defaults(handler=_validate)

    plugins = commands.add_parser("plugins", help="list installed plugins as JSON")
    plugins.set_defaults(handler=_plugins)

    for command in registry.commands.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="STATE",
        help="keep progress in STATE (JSON, written after each acknowledged batch); "
        "if STATE exists, continue the job it records",
    )
    parser.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="also write the summary as JSON"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines"
    )


def _run(args: argparse.Namespace) -> int:
    return _execute(load_pipeline_file(args.config), args, args.config_diff, args.full)


def _query(args: argparse.Namespace) -> int:
    try:
        result = json.loads(args.result)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--result is not valid JSON: {error.msg} at character {error.pos}"
        ) from None
    _warn_of_literal_secrets(result, args.registry)
    tables = {Path(path).name.split(".")[0]: str(Path(path).resolve()) for path in args.file}
    source: dict[str, Any] = {"type": "sql", "query": args.sql}
    if tables:
        source["tables"] = tables
    if args.database:
        source["database"] = str(Path(args.database).resolve())
    pipeline = pipeline_from_mapping({"in": source, "out": result}, Path.cwd())
    return _execute(pipeline, args)


def _warn_of_literal_secrets(result: Any, registry: Registry) -> None:
    """A key written into --result is in the process list, visible to every local user."""
    if not isinstance(result, dict) or not isinstance(result.get("type"), str):
        return
    try:
        schema = registry.output_class(result["type"]).config_schema()
    except ArrowbulkError:
        return  # an unknown type: the run reports it
    for key in secret_keys(schema):
        value = result.get(key)
        if isinstance(value, str) and "${" not in value:
            log.warning(
                "--result: %s is written on the command line, where other users can read it in "
                'the process list; write "%s": "${INSIDER_API_KEY}" (the JSON in single '
                "quotes) and export the variable instead",
                key,
                key,
            )


def _retry(args: argparse.Namespace) -> int:
    original = load_pipeline_file(args.config)
    registry = args.registry.with_input(RejectsInput)
    schema = Job(original, registry).schema()
    out = dict(original.output)
    rejects = args.rejects.resolve()
    run_id = uuid.uuid4().hex[:12]
    # Records rejected again must not be appended to the file being read.
    if "reject_file" in registry.output_class(out["type"]).config_schema().get("properties", {}):
        out["reject_file"] = str(rejects.with_name(f"{rejects.stem}.retry-{run_id}.jsonl"))
    source = {"type": RejectsInput.type_name, "path": str(rejects)}
    job = _new_job(
        PipelineConfig(source, out, original.exec, original.base_dir), registry, args, run_id
    )
    assert isinstance(job.input, RejectsInput)
    records = job.input.load(schema, args.run)
    print(f"retrying {records} record(s) from {rejects}")
    return _finish(job, args)


def _execute(
    pipeline: PipelineConfig,
    args: argparse.Namespace,
    config_diff: Path | None = None,
    full: bool = False,
) -> int:
    """``run`` and ``query``: the Python API's run, with progress, signals and the summary."""
    _check_summary_path(args.summary_json)
    summary = run_pipeline(
        pipeline,
        args.registry,
        resume=args.resume,
        config_diff=config_diff,
        progress=_progress(args),
        around=_stop_on_signals,
        full=full,
    )
    return _report(summary, args)


def _new_job(
    pipeline: PipelineConfig,
    registry: Registry,
    args: argparse.Namespace,
    run_id: str | None = None,
) -> Job:
    return Job(pipeline, registry, run_id=run_id, progress=_progress(args), resume=args.resume)


def _progress(args: argparse.Namespace) -> Progress:
    return Progress(stream=None if args.no_progress else sys.stderr)


def _finish(job: Job, args: argparse.Namespace) -> int:
    _check_summary_path(args.summary_json)
    with _stop_on_signals(job.cancellation):
        summary = job.run()
    return _report(summary, args)


def _report(summary: JobSummary, args: argparse.Namespace) -> int:
    print(scrub(summary.render()))
    if args.summary_json:
        _write_summary(summary, args.summary_json)
    if summary.exception is not None:
        raise summary.exception  # main() turns it into one message and an exit code
    return 0


def _write_summary(summary: JobSummary, path: Path) -> None:
    text = json.dumps(scrub_json(summary.as_json()), indent=2, default=str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scrub(text) + "\n", encoding="utf-8")
    except OSError as error:
        # The job's outcome stands; only the copy of its summary is missing.
        log.error("cannot write --summary-json %s: %s", path, error.strerror or error)


def _check_summary_path(path: Path | None) -> None:
    """Refuse an unwritable --summary-json before anything is sent (its folder is created)."""
    if path is not None:
        check_writable_folder(path.parent, "--summary-json")


_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextlib.contextmanager
def _stop_on_signals(cancellation: Cancellation) -> Iterator[None]:
    """First SIGINT / SIGTERM: stop the job gracefully. A second one: exit at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread (an embedding application's)
        return

    def handle(number: int, frame: object) -> None:
        name, code = signal.Signals(number).name, _SIGNAL_EXIT[signal.Signals(number)]
        if cancellation.cancel(Interrupted(name, code)):
            print(
                f"\n{name}: stopping; waiting up to {cancellation.grace_seconds:g}s for the "
                "answers in flight (send it again to exit at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        print(
            f"\n{name} again: exiting now; the state file stays consistent",
            file=sys.stderr,
            flush=True,
        )
        os._exit(code)

    previous = {number: signal.signal(number, handle) for number in _SIGNAL_EXIT}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _preview(args: argparse.Namespace) -> int:
    job = Job(load_pipeline_file(args.config), args.registry)
    schema = job.schema()
    print(f"schema ({job.input.task_count()} task(s)):")
    for field in schema:
        print(f"  {field.name}: {field.type}")
    batches, remaining = [], args.rows
    for index in range(job.input.task_count()):
        for batch in job.input.read(index):
            batches.append(batch.slice(0, remaining))
            remaining -= min(remaining, batch.num_rows)
            if remaining == 0:
                break
        if remaining == 0:
            break
    table = pa.Table.from_batches(batches, schema=schema)
    print(f"first {table.num_rows} row(s):")
    print(scrub(_render_rows(table)))
    return 0


def _render_rows(table: pa.Table, width: int = 24) -> str:
    """A plain aligned table; cells longer than ``width`` are cut with an ellipsis.

    Values are shown as the jsonl output writes them (exact, whatever else is installed).
    """

    def cell(value: Any) -> str:
        if value is None:
            text = "null"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, float) and not math.isfinite(value):
            text = repr(value)
        else:
            text = orjson.dumps(value).decode()
        return text if len(text) <= width else text[: width - 1] + "…"

    columns = []
    for column in table.columns:
        try:
            values = jsonable(column.combine_chunks()).to_pylist()
        except (NotJson, pa.ArrowException):
            values = [f"<{column.type}>"] * table.num_rows
        columns.append([cell(v) for v in values])
    return aligned([table.column_names] + [list(row) for row in zip(*columns, strict=True)])


def _validate(args: argparse.Namespace) -> int:
    """The dry run: exit 1 when the job as configured would stop on an invalid record, or
    when every record is invalid; 0 with the counts otherwise."""
    job = Job(load_pipeline_file(args.config), args.registry)
    rejects = None
    if args.rejects is not None:
        check_writable_folder(args.rejects.absolute().parent, "--rejects")
        args.rejects.unlink(missing_ok=True)
        rejects = RejectWriter(args.rejects, job.context.run_id)
    try:
        dry_run = DryRun(max(0, args.show_requests), max(0, args.show_changes), rejects)
        result = job.validate(dry_run)
    finally:
        if rejects is not None:
            rejects.close()
    print(f"config: ok ({job.input_type} -> {job.output_type})")
    print(f"schema: ok ({len(result.schema)} columns, {result.task_count} task(s))")
    figures = dict(result.record_check or {})
    if not figures:
        return 0
    print(render_dry_run(figures))
    if rejects is not None and rejects.count:
        print(f"invalid records written to {args.rejects}")
    checked, invalid = figures.get("records_checked", 0), figures.get("invalid", 0)
    would_stop = bool(invalid) and bool(figures.get("stops_on_invalid"))
    if would_stop:
        print(
            "the job as configured stops at the first invalid record and sends nothing: fix "
            "the data, or set skip_invalid_records: true to send the valid ones"
        )
    return 1 if would_stop or (checked and invalid == checked) else 0


def _plugins(args: argparse.Namespace) -> int:
    print(json.dumps(args.registry.as_json(), indent=2))
    return 0


def _choose_memory_pool() -> None:
    """Arrow's jemalloc pool (the system allocator where pyarrow lacks it), unless
    ARROW_DEFAULT_MEMORY_POOL names one.

    Measured on the insider benchmark (attributes, peak RSS for 200k / 2M users, same speed
    within noise): jemalloc 221 / 235 MB; the system allocator 285 / 380 MB, growing all
    along the run as glibc keeps freed chunks of many sizes in its arenas; mimalloc ~375 MB.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow build without jemalloc
        pa.set_memory_pool(pa.system_memory_pool())


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True


if __name__ == "__main__":
    entry()
