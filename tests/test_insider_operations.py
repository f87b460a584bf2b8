"""The operations table: one row per operation, consistent with the config schema and the seed."""

from __future__ import annotations

import pytest

from arrowbulk import load_schema
from arrowbulk.plugins.insider.config import operation_of
from arrowbulk.plugins.insider.operations import (
    DEFAULT_RATES,
    OPERATIONS,
    Body,
    Envelope,
    Operation,
    Takes,
)


def test_every_operation_has_a_row() -> None:
    assert set(OPERATIONS) == set(Operation)


def test_default_rates_are_the_config_schemas_defaults() -> None:
    limits = load_schema("insider", "output.json")["properties"]["rate_limits"]["properties"]
    assert {family: limits[family]["default"] for family in limits} == DEFAULT_RATES


@pytest.mark.parametrize(
    ("config", "operation"),
    [
        (
            {"export_mode": "USER_ATTRIBUTES", "attribute_operation": "DELET_ATTRIBUTES"},
            Operation.DELETE_ATTRIBUTES,
        ),
        ({"export_mode": "USER_EVENTS"}, Operation.EVENTS),
        (
            {"export_mode": "USER_AUDIENCES", "audience_operation": "REMOVE"},
            Operation.AUDIENCE_REMOVE,
        ),
    ],
)
def test_the_seed_settings_name_an_operation(config, operation) -> None:
    assert (
        operation_of({"attribute_operation": "UPSERT", "audience_operation": "APPEND", **config})
        is operation
    )


def test_rows_agree_with_what_insider_documents() -> None:
    # Deletions of identities and PII take one user per request, without an envelope.
    for operation in (Operation.DELETE_IDENTIFIERS, Operation.DELETE_PII):
        spec = operation.spec
        assert spec.one_user_per_request and spec.envelope is Envelope.SINGLE
        assert spec.takes is Takes.NOTHING and spec.body is Body.IDENTIFIERS
    assert Operation.DELETE_IDENTIFIERS.spec.method == "DELETE"
    # Only the upsert endpoint takes skip_hook; REPLACE and audience REPLACE set not_append.
    for operation, spec in OPERATIONS.items():
        assert (spec.envelope is Envelope.UPSERT) == spec.path.endswith("/upsert"), operation
        assert spec.not_append == (
            operation in {Operation.REPLACE_ATTRIBUTES, Operation.AUDIENCE_REPLACE}
        )
