"""arrowbulk's throughput and memory against the straightforward exporter, in one run.

    pip install '.[test,bench]' && python benchmarks/run.py

(``test`` too: the check that the fast encoder equals the reference uses the tests' reference.)

Generates deterministic users and events (nulls, unicode, Arrow lists, arrays as text), starts
a loopback sink that checks every record arrived exactly once, then runs in child processes:
arrowbulk's USER_ATTRIBUTES and USER_EVENTS exports (validation on) at 200k and 2M rows, and
the baseline (pandas + json + requests) at 200k rows; with ``--values wide``, also the
hand-written ceiling (``ceiling.py``: Arrow-compute bodies, 2 encoder and 2 sender threads, no
validation) at each size. Prints rows/s (the job's own time,
median of --repeat runs), the ratio to the baseline, and each child's peak RSS.

arrowbulk's children cannot import pandas (see hide_pandas): it is installed here for the
baseline only, and arrowbulk's own install does not have it. --with-pandas lifts that.
"""

from __future__ import annotations

import argparse
import functools
import importlib.abc
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
ROWS_PER_GROUP = 50_000
#: 25,000 upsert requests a minute per account (out.rate_limits.upsert's default), full ones.
UPSERT_USERS_PER_SECOND = 25_000 * 1_000 / 60


def dataset(kind: str, rows: int, values: str = "clean") -> Path:
    suffix = "" if values == "clean" else f"-{values}"
    path = DATA / f"{kind}-{rows}{suffix}.parquet"
    if not path.exists():
        import pyarrow.parquet as pq

        sys.path.insert(0, str(HERE))
        import data

        DATA.mkdir(exist_ok=True)
        if kind == "users":
            table = {"clean": data.users, "crm": data.crm_users, "wide": data.wide_users}[values](
                rows
            )
        else:
            table = data.events(rows)
        pq.write_table(table, path, row_group_size=ROWS_PER_GROUP)
    return path


class Sink:
    def __init__(self, key: str, latency_ms: float = 0.0) -> None:
        self.port_file = Path(tempfile.mkdtemp()) / "port"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "sink.py"), str(self.port_file), key, str(latency_ms)]
        )
        deadline = time.time() + 20
        while not (self.port_file.exists() and self.port_file.read_text()):
            if time.time() > deadline:
                raise RuntimeError("the sink did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"

    def call(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def child(
    kind: str,
    exporter: str,
    path: Path,
    sink: Sink,
    with_pandas: bool = False,
    setup: str = "tuned",
    source: str = "file",
    normalize: str = "on",
    out_extra: dict | None = None,
    expect_sent: int | None = None,
    exec_config: dict | None = None,
) -> dict:
    sink.call("/_reset")
    command = [
        sys.executable,
        str(HERE / "run.py"),
        "--child",
        exporter,
        "--kind",
        kind,
        "--data",
        str(path),
        "--url",
        sink.url,
        *(["--with-pandas"] if with_pandas else []),
        "--setup",
        setup,
        "--input",
        source,
        "--normalize",
        normalize,
        "--out-extra",
        json.dumps(out_extra or {}),
        "--exec",
        json.dumps(exec_config or {}),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{exporter} failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stats = sink.call("/_stats")
    expected = result["rows"] if expect_sent is None else expect_sent
    if stats["distinct"] != expected or stats["duplicates"]:
        raise RuntimeError(
            f"{exporter} {kind}: the sink saw {stats}, expected {expected} records once each"
        )
    return result


def run_child(args: argparse.Namespace) -> None:
    """In the child: run one export, print {rows, seconds, peak_rss_mb} as JSON."""
    events = args.kind == "events"
    if args.child == "baseline":
        sys.path.insert(0, str(HERE))
        import baseline

        started = time.perf_counter()
        rows = baseline.export(args.data, args.url + "/api/user/v1/upsert", events)
        seconds = time.perf_counter() - started
    elif args.child == "ceiling":
        hide_pandas()
        sys.path.insert(0, str(HERE))
        import ceiling

        started = time.perf_counter()
        rows = ceiling.export(args.data, args.url + "/api/user/v1/upsert")
        seconds = time.perf_counter() - started
    else:
        if not args.with_pandas:
            hide_pandas()
        import yaml

        from arrowbulk.cli import main

        folder = Path(tempfile.mkdtemp())
        out = {
            "type": "insider",
            "api_key": "benchmark-key",
            "partner_name": "bench",
            "endpoint": args.url,
            "export_mode": "USER_EVENTS" if events else "USER_ATTRIBUTES",
        }
        if args.setup == "tuned":  # the earlier benchmark's tuning; "default" adds nothing
            out.update(skip_invalid_records=True, max_requests_in_flight=8)
        if args.normalize == "off":
            out["normalize"] = False
        out.update(json.loads(args.out_extra))
        source = (
            {"type": "file", "path": args.data}
            if args.input == "file"
            else {"type": "sql", "query": f"SELECT * FROM '{args.data}'"}
        )
        job = {"in": source, "out": out, "exec": json.loads(args.exec)}
        (folder / "job.yml").write_text(yaml.safe_dump(job))
        code = main(
            [
                "-q",
                "run",
                str(folder / "job.yml"),
                "--no-progress",
                "--summary-json",
                str(folder / "s.json"),
            ]
        )
        summary = json.loads((folder / "s.json").read_text())
        if code != 0 or summary["rows"]["accepted"] != summary["rows"]["read"]:
            raise SystemExit(f"arrowbulk did not deliver every row: {summary['rows']}")
        rows, seconds = summary["rows"]["read"], summary["seconds"]
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": round(peak_rss_mb(), 1)}))


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is hidden: arrowbulk's own install does not have it")


def hide_pandas() -> None:
    """Run arrowbulk as ``pip install .`` installs it: without pandas.

    pandas is in this environment only for the baseline. If it can be imported, pyarrow
    imports it (about 0.5 s and 50 MB here) the first time ``pa.array()`` is called, to check
    whether its argument is a pandas object; arrowbulk never uses pandas. ``--with-pandas``
    measures that case too.
    """
    sys.meta_path.insert(0, _NoPandas())


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over from the parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def changed_only(args: argparse.Namespace) -> None:
    """Day 1 sends every user; day 2, with 1% of them changed, sends only those."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    print(f"only_changed, setup {args.setup}, sink latency {args.latency_ms:g} ms")
    print(
        f"{'rows':>10}{'day 1 s':>10}{'day 2 s':>10}{'day2/day1':>11}{'store MB':>10}{'peak RSS':>10}"
    )
    for rows in args.rows:
        day1 = dataset("users", rows)
        day2 = DATA / f"users-{rows}-1pct-changed.parquet"
        if not day2.exists():
            table = pq.read_table(day1)
            changed = pa.array(np.arange(rows) % 100 == 0)
            names = pc.if_else(
                changed, pc.binary_join_element_wise(table["name"], "!", ""), table["name"]
            )
            pq.write_table(
                table.set_column(table.schema.get_field_index("name"), "name", names),
                day2,
                row_group_size=ROWS_PER_GROUP,
            )
        store = Path(tempfile.mkdtemp()) / "fingerprints.parquet"
        extra = {"only_changed": True, "fingerprint_file": str(store)}
        sink = Sink("uuid", args.latency_ms)
        try:
            first = child("users", "arrowbulk", day1, sink, setup=args.setup, out_extra=extra)
            second = child(
                "users",
                "arrowbulk",
                day2,
                sink,
                setup=args.setup,
                out_extra=extra,
                expect_sent=len(range(0, rows, 100)),
            )
        finally:
            sink.stop()
        ratio = second["seconds"] / first["seconds"]
        peak = max(first["peak_rss_mb"], second["peak_rss_mb"])
        print(
            f"{rows:>10,}{first['seconds']:>10.2f}{second['seconds']:>10.2f}{ratio:>11.2f}"
            f"{store.stat().st_size / 2**20:>10.1f}{peak:>8.0f}MB"
        )


def check_encoder(path: Path, kind: str) -> str:
    """The fast encoder's output equals the reference encoder's on the benchmark data."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_insider_encode import (
        fast_events,
        fast_users,
        floats_equal,
        reference_events,
        reference_users,
    )

    table = pq.ParquetFile(path).read_row_group(0).slice(0, 5000)
    fast, reference = (
        (fast_users, reference_users) if kind == "users" else (fast_events, reference_events)
    )
    same = all(floats_equal(a, b) for a, b in zip(fast(table), reference(table), strict=True))
    return "equal" if same else "DIFFERENT"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per arrowbulk figure (median)")
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument(
        "--only", choices=["attributes", "events"], help="run one export kind (and its baseline)"
    )
    parser.add_argument(
        "--with-pandas",
        action="store_true",
        help="let arrowbulk's children import pandas (pyarrow then imports it at the first pa.array call)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the sink answers after this long (±20%% jitter), like an API far away",
    )
    parser.add_argument(
        "--setup",
        choices=["tuned", "default"],
        default="tuned",
        help="tuned: skip_invalid_records true, 8 in flight (the earlier figures); default: arrowbulk's defaults",
    )
    parser.add_argument(
        "--input",
        choices=["file", "sql"],
        default="file",
        help="read the data with the file or the sql input",
    )
    parser.add_argument(
        "--normalize",
        choices=["on", "off"],
        default="on",
        help="out.normalize (on is the default); off measures what normalization costs",
    )
    parser.add_argument(
        "--values",
        choices=["clean", "crm", "wide"],
        default="clean",
        help="crm: the users as a CRM writes them (lowercase codes, text dates, yes/no, 0090 phones), which normalization fixes; wide: a 20-number and a 4-string list per user (issue 11's shape)",
    )
    parser.add_argument(
        "--changed-only",
        action="store_true",
        help="only_changed: run each size twice on one fingerprint store, the second time with 1%% of users changed",
    )
    parser.add_argument("--out-extra", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--exec", default="{}", help=argparse.SUPPRESS)
    parser.add_argument(
        "--dask",
        type=int,
        metavar="N",
        help="also run arrowbulk's figures on a LocalCluster of N worker processes (exec: dask)",
    )
    parser.add_argument(
        "--child", choices=["arrowbulk", "baseline", "ceiling"], help=argparse.SUPPRESS
    )
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    if args.changed_only:
        changed_only(args)
        return
    print(
        f"setup {args.setup}, input {args.input}, normalize {args.normalize}, values {args.values}, "
        f"sink latency {args.latency_ms:g} ms"
        + (" (the baseline sends one request at a time)" if args.latency_ms else "")
    )
    print(f"{'export':<22}{'rows':>10}{'rows/s':>12}{'vs baseline':>13}{'peak RSS':>11}  runs")
    for kind, key in (("users", "uuid"), ("events", "event_group_id")):
        if args.only and args.only != ("attributes" if kind == "users" else "events"):
            continue
        sink = Sink(key, args.latency_ms)
        try:
            label = "attributes" if kind == "users" else "events"
            base_rate = math.nan  # --baseline-rows 0: no baseline, ratios shown as nan
            if args.baseline_rows:
                base = child(kind, "baseline", dataset(kind, args.baseline_rows), sink)
                base_rate = base["rows"] / base["seconds"]
                print(
                    f"{'baseline ' + label:<22}{base['rows']:>10,}{base_rate:>12,.0f}{'1.0x':>13}{base['peak_rss_mb']:>9.0f}MB  1"
                )
            if kind == "users":
                # Every request pays the account's upsert limit (RateLimiter): a figure near it
                # is the limiter's pace, not arrowbulk's speed (the ceiling peer has no limiter).
                print(
                    f"  Insider's upsert limit, 1,000 users a request: {UPSERT_USERS_PER_SECOND:,.0f} users/s"
                )
            peaks = {}
            for rows in args.rows:
                path = dataset(kind, rows, args.values)
                ceiling_rate = None
                if kind == "users" and args.values == "wide":  # the shape the ceiling is for
                    top = child(kind, "ceiling", path, sink)
                    ceiling_rate = top["rows"] / top["seconds"]
                    print(
                        f"{'ceiling ' + label:<22}{rows:>10,}{ceiling_rate:>12,.0f}"
                        f"{ceiling_rate / base_rate:>12.1f}x{top['peak_rss_mb']:>9.0f}MB  1"
                    )

                measure = functools.partial(
                    child,
                    kind,
                    "arrowbulk",
                    path,
                    sink,
                    args.with_pandas,
                    args.setup,
                    args.input,
                    args.normalize,
                )

                runs = [measure() for _ in range(args.repeat)]
                rate = statistics.median(r["rows"] / r["seconds"] for r in runs)
                peaks[rows] = max(r["peak_rss_mb"] for r in runs)
                rates = ", ".join(f"{r['rows'] / r['seconds']:,.0f}" for r in runs)
                versus = f" ({rate / ceiling_rate:.2f} of the ceiling)" if ceiling_rate else ""
                print(
                    f"{'arrowbulk ' + label:<22}{rows:>10,}{rate:>12,.0f}{rate / base_rate:>12.1f}x{peaks[rows]:>9.0f}MB  {rates}{versus}"
                )
                if args.dask:
                    spread = measure(exec_config={"type": "dask", "workers": args.dask})
                    spread_rate = spread["rows"] / spread["seconds"]
                    print(
                        f"{f'  on {args.dask} dask workers':<22}{rows:>10,}{spread_rate:>12,.0f}"
                        f"{spread_rate / base_rate:>12.1f}x{spread['peak_rss_mb']:>9.0f}MB  "
                        f"({spread_rate / rate:.2f} of local threads; client RSS only)"
                    )
            if len(peaks) > 1:
                small, large = min(peaks), max(peaks)
                print(
                    f"  peak RSS {large:,} rows / {small:,} rows: {peaks[large] / peaks[small]:.2f}x"
                )
            print(
                f"  fast encoder vs reference on this data: {check_encoder(dataset(kind, min(args.rows), args.values), kind)}"
            )
        finally:
            sink.stop()


if __name__ == "__main__":
    main()
