"""The hand-written ceiling arrowbulk is measured against: the fastest plain exporter we know
how to write for the wide-list shape, with none of arrowbulk's duties.

Two encoder threads take Parquet row groups in turn and build each request body with Arrow
compute alone (each column's ``"key":value`` texts, joined per user with
``binary_join_element_wise``, users joined per request with ``binary_join``); two sender
threads post the bodies over urllib3 keep-alive connections, in order, four bodies queued at
most. No validation, normalization, rejects, retries, resume or accounting: what such a tool
skips is what arrowbulk's figure pays for. The bodies are those arrowbulk sends (the same
members, groups and number texts); ``run.py`` compares the two on a sample.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import urllib3

IDENTIFIERS = ("uuid", "email", "phone_number")
ATTRIBUTES = {"name", "surname", "gender", "age", "language", "country", "city", "email_optin"}
USERS_PER_REQUEST = 1000
ENCODERS = 2
SENDERS = 2
#: Rows encoded at a time: small enough that senders start early, large enough for Arrow
#: (measured, 2M wide users: 2,000 rows 444k rows/s, 4,000 472k, 8,000 412k, 16,000 452k).
BATCH_ROWS = 4 * USERS_PER_REQUEST


def _escaped(texts: pa.Array) -> pa.Array:
    """JSON string contents (the benchmark's texts hold no control characters)."""
    return pc.replace_substring(pc.replace_substring(texts, "\\", "\\\\"), '"', '\\"')


def _quoted(texts: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', _escaped(texts), '"', "")


def _json(column: pa.Array) -> pa.Array:
    """Each value as JSON text; null stays null."""
    kind = column.type
    if pa.types.is_string(kind):
        return _quoted(column)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return column.cast(pa.string())
    if pa.types.is_list(kind):
        items = column.flatten()
        texts = _quoted(items) if pa.types.is_string(items.type) else items.cast(pa.string())
        offsets = pc.subtract(column.offsets, column.offsets[0])
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), ",")
        inner = pc.if_else(column.is_valid(), joined, pa.scalar(None, pa.string()))
        return pc.binary_join_element_wise("[", inner, "]", "")
    raise SystemExit(f"the ceiling is written for the wide-list shape; {kind} is not handled")


def _members(batch: pa.RecordBatch, names: list[str]) -> pa.Array | None:
    """``"a":1,"b":"x"`` per row, null members left out; None when ``names`` is empty."""
    if not names:
        return None
    parts = [
        pc.binary_join_element_wise(f'"{name}":', _json(batch.column(name)), "") for name in names
    ]
    return pc.binary_join_element_wise(*parts, ",", null_handling="skip")


def encode(batch: pa.RecordBatch) -> list[bytes]:
    """The upsert bodies of a batch, USERS_PER_REQUEST users each."""
    names = batch.schema.names
    identifiers = _members(batch, [n for n in names if n in IDENTIFIERS])
    attributes = _members(batch, [n for n in names if n in ATTRIBUTES])
    custom = _members(batch, [n for n in names if n not in IDENTIFIERS and n not in ATTRIBUTES])
    if custom is not None:
        custom = pc.binary_join_element_wise('"custom":{', custom, "}", "")
    inside = [a for a in (attributes, custom) if a is not None]
    attributes_text = pc.binary_join_element_wise(*inside, ",", null_handling="skip")
    users = pc.binary_join_element_wise(
        '{"identifiers":{', identifiers, '},"attributes":{', attributes_text, "}}", ""
    )
    rows = len(users)
    starts = [*range(0, rows, USERS_PER_REQUEST), rows]
    grouped = pa.ListArray.from_arrays(pa.array(starts, pa.int32()), users)
    bodies = pc.binary_join_element_wise(
        '{"users":[', pc.binary_join(grouped, ","), '],"skip_hook":true}', ""
    )
    return [body.as_buffer().to_pybytes() for body in bodies]


def export(path: str, url: str) -> int:
    """Send every user of the file at ``path``; return how many were sent."""
    parquet = pq.ParquetFile(path)
    groups: queue.Queue[int] = queue.Queue()
    for group in range(parquet.num_row_groups):
        groups.put(group)
    bodies: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    pool = urllib3.PoolManager(maxsize=SENDERS)
    headers = {
        "X-PARTNER-NAME": "bench",
        "X-REQUEST-TOKEN": "benchmark-key",
        "Content-Type": "application/json",
    }
    sent = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def encoder() -> None:
        reader = pq.ParquetFile(path)  # one reader per thread
        while True:
            try:
                group = groups.get_nowait()
            except queue.Empty:
                return
            for batch in reader.iter_batches(
                batch_size=BATCH_ROWS, row_groups=[group], use_threads=False
            ):
                for body in encode(batch):
                    bodies.put(body)

    def sender() -> None:
        while (body := bodies.get()) is not None:
            response = pool.request("POST", url, body=body, headers=headers)
            if response.status != 200:
                raise RuntimeError(f"the sink answered {response.status}")
            users = response.json()["data"]["successful"]["count"]
            with lock:
                sent[0] += users

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:
                errors.append(error)  # raised by export() once every thread has stopped

        return run

    encoders = [threading.Thread(target=guarded(encoder)) for _ in range(ENCODERS)]
    senders = [threading.Thread(target=guarded(sender)) for _ in range(SENDERS)]
    for thread in encoders + senders:
        thread.start()
    for thread in encoders:
        thread.join()
    for _ in senders:
        bodies.put(None)
    for thread in senders:
        thread.join()
    if errors:
        raise errors[0]
    return sent[0]
