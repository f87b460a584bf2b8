"""Every JSON Schema the project ships has a valid and an invalid example, run here."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jsonschema
import pytest

from arrowbulk.resources import load_schema

# schema file -> (a valid instance, an invalid instance)
EXAMPLES: dict[str, tuple[Any, Any]] = {
    "core/exec.json": ({"max_threads": 4}, {"max_threads": 0}),
    "file/input.json": (
        {"type": "file", "path": "a/*.parquet"},
        {"type": "file", "path": "a.csv", "batch_size": 0},
    ),
    "file/output.json": (
        {"type": "file", "path": "out.parquet"},
        {"type": "file", "path": "o.csv", "format": "csv"},
    ),
    "sql/input.json": (
        {"type": "sql", "query": "SELECT 1"},
        {"type": "sql", "query": "SELECT 1", "tables": {"bad name": "x"}},
    ),
    "null/output.json": ({"type": "null"}, {"type": "null", "path": "x"}),
    "adbc/input.json": (
        {
            "type": "adbc",
            "driver": "postgresql",
            "uri": "postgresql://u@127.0.0.1/db",
            "query": "SELECT * FROM users",
            "incremental": {"columns": ["updated_at", "id"]},
        },
        {"type": "adbc", "driver": "mysql", "uri": "x", "query": "SELECT 1"},
    ),
    "filters/rename.json": (
        {"type": "rename", "case": "snake", "columns": {"user_id": "uuid"}},
        {"type": "rename", "case": "camel"},
    ),
    "filters/columns.json": (
        {
            "type": "columns",
            "drop": ["x"],
            "cast": {"at": {"type": "timestamp", "format": "%d/%m/%Y"}, "n": "int64"},
            "add": {"source": "crm"},
        },
        {"type": "columns", "select": ["a"], "drop": ["b"]},
    ),
    "filters/sql.json": ({"type": "sql", "query": "SELECT * FROM batch"}, {"type": "sql"}),
    "insider/output.json": (
        {"type": "insider", "api_key": "k", "partner_name": "acme", "export_mode": "USER_EVENTS"},
        {"type": "insider", "partner_name": "acme", "max_records_per_request": 1001},
    ),
    "insider/identifiers.json": (
        {"email": "a@b.co", "phone_number": "+905551112233", "uuid": "u-1", "loyalty_id": "L-9"},
        {"uuid": "undefined"},
    ),
    "insider/attributes.json": (
        {
            "name": "Ada",
            "birthday": "1990-05-01T00:00:00Z",
            "email_optin": True,
            "static_segment_id": [1, 2],
            "country": "TR",
            "language": "en_US",
            "tier": "gold",
            "tags": ["a", "b"],
        },
        {"tags": [{"nested": "object"}]},
    ),
    "insider/event.json": (
        {
            "event_name": "purchase",
            "timestamp": "2026-01-10T21:35:20Z",
            "event_params": {
                "event_group_id": "O-1",
                "currency": "USD",
                "unit_sale_price": 9.5,
                "quantity": 1,
            },
        },
        {
            "event_name": "purchase",
            "timestamp": "2026-01-10T21:35:20Z",
            "event_params": {"currency": "USD"},
        },
    ),
    "insider/audience.json": (
        {"td_audience_id": [1, 2], "td_audience_name": ["A", "B"]},
        {"td_audience_id": ["1"]},
    ),
}
DATA_FILES = {"insider/events.json"}  # data the plugin reads, not a schema


def shipped_schemas() -> set[str]:
    root = resources.files("arrowbulk.schemas")
    found = set()
    for folder in root.iterdir():
        if folder.is_dir():
            found |= {
                f"{folder.name}/{entry.name}"
                for entry in folder.iterdir()
                if entry.name.endswith(".json")
            }
    return found - DATA_FILES


def test_every_shipped_schema_has_examples() -> None:
    assert shipped_schemas() == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_schema_accepts_its_valid_example_and_refuses_its_invalid_one(name: str) -> None:
    plugin, file = name.split("/")
    schema = load_schema(plugin, file)
    jsonschema.Draft202012Validator.check_schema(schema)
    valid, invalid = EXAMPLES[name]
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(valid)) == []
    assert list(validator.iter_errors(invalid)) != []
