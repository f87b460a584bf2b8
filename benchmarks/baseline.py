"""The straightforward exporter arrowbulk is measured against.

What a data engineer writes in an afternoon: pandas reads the Parquet file, rows become
dicts, each dict is mapped to Insider's user object (arrays from text with
``ast.literal_eval``, timestamps with ``isoformat``, nulls and NaN left out), ``json.dumps``
makes the body and ``requests`` posts 1000 users at a time over one keep-alive session.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import requests

DEFAULT_ATTRIBUTES = {
    "name",
    "surname",
    "birthday",
    "gender",
    "age",
    "language",
    "country",
    "city",
    "email_optin",
    "gdpr_optin",
    "sms_optin",
    "whatsapp_optin",
    "static_segment_id",
    "list_id",
    "lo",
}
DEFAULT_PARAMS = {
    "event_group_id",
    "currency",
    "unit_sale_price",
    "unit_price",
    "quantity",
    "product_id",
    "taxonomy",
}
IDENTIFIERS = ("email", "phone_number", "uuid")


def clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return (
            value.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
            if value.tzinfo
            else value.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    if isinstance(value, str) and value.startswith("["):
        return ast.literal_eval(value)
    return value


def chunks(path: str, size: int = 1000) -> Iterator[pd.DataFrame]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=50_000):
        frame = batch.to_pandas()
        for start in range(0, len(frame), size):
            yield frame.iloc[start : start + size]


def user_of(record: dict[str, Any]) -> dict[str, Any]:
    identifiers, attributes, custom = {}, {}, {}
    for key, raw in record.items():
        value = clean(raw)
        if value is None:
            continue
        if key in IDENTIFIERS:
            identifiers[key] = value
        elif key in DEFAULT_ATTRIBUTES:
            attributes[key] = value
        else:
            custom[key] = value
    if custom:
        attributes["custom"] = custom
    return {"identifiers": identifiers, "attributes": attributes}


def event_users(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    users: dict[str, dict[str, Any]] = {}
    for record in records:
        params, custom = {}, {}
        for key, raw in record.items():
            value = clean(raw)
            if value is None or key in {"uuid", "event_name", "timestamp"}:
                continue
            (params if key in DEFAULT_PARAMS else custom)[key] = value
        if custom:
            params["custom"] = custom
        event = {
            "event_name": record["event_name"],
            "timestamp": clean(record["timestamp"]),
            "event_params": params,
        }
        users.setdefault(record["uuid"], {"identifiers": {"uuid": record["uuid"]}, "events": []})[
            "events"
        ].append(event)
    return list(users.values())


def export(path: str, url: str, events: bool) -> int:
    session = requests.Session()
    session.headers.update(
        {
            "X-PARTNER-NAME": "bench",
            "X-REQUEST-TOKEN": "benchmark-key",
            "Content-Type": "application/json",
        }
    )
    rows = 0
    for frame in chunks(path):
        records = frame.to_dict("records")
        users = event_users(records) if events else [user_of(r) for r in records]
        response = session.post(url, data=json.dumps({"users": users, "skip_hook": True}))
        response.raise_for_status()
        rows += len(records)
    return rows
