"""The compiled, vectorized checks agree with plain jsonschema on random records."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import pyarrow as pa
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_insider_encode import task_for

from arrowbulk.plugins.insider.arrays import parse_array_text
from arrowbulk.plugins.insider.columns import plan_columns
from arrowbulk.plugins.insider.job import prepare_columns
from arrowbulk.plugins.insider.schema_rules import compile_schema
from arrowbulk.plugins.insider.spec import load_spec, resolve_refs
from arrowbulk.plugins.insider.validate import RecordValidator

SPEC = load_spec()
ATTRIBUTES = jsonschema.Draft202012Validator(resolve_refs(SPEC.attributes, SPEC.attributes))
IDENTIFIERS = jsonschema.Draft202012Validator(resolve_refs(SPEC.identifiers, SPEC.identifiers))

# Values near the rules' edges, so both valid and invalid records come up often.
emails = st.sampled_from(
    ["a@b.co", "x@y", "@b.co", "a@b.", "ü@ex.am.ple", "undefined", " a@b.co", ""]
)
phones = st.sampled_from(
    ["+905551112233", "+1234567", "+0123456789", "905551112233", "+12345678901234567", "+9055 51"]
)
countries = st.sampled_from(["TR", "tr", "TUR", "US", "", "Ü1"])
languages = st.sampled_from(["en_US", "tr", "EN_us", "deu-DE", "english", "pt_BRA"])
arrays = st.sampled_from(
    ["[1, 2]", "['a']", "[]", "['a', 1]", "[true]", "['x'", "[1.5]", "plain", "[ 'a' , 'b' ]"]
)
ages = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
    st.integers(-5, 200).map(float),
)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def records(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(1, 10))
    column = lambda s: draw(st.lists(s, min_size=rows, max_size=rows))  # noqa: E731
    return pa.table(
        {
            "email": pa.array(column(nullable(emails)), pa.string()),
            "phone_number": pa.array(column(nullable(phones)), pa.string()),
            "uuid": pa.array(
                column(nullable(st.sampled_from(["u-1", "null", "0", "NaN", "x" * 600, "ok"]))),
                pa.string(),
            ),
            "country": pa.array(column(nullable(countries)), pa.string()),
            "language": pa.array(column(nullable(languages)), pa.string()),
            "age": pa.array(column(ages), pa.float64()),
            "static_segment_id": pa.array(column(nullable(arrays)), pa.string()),
            "tags": pa.array(column(nullable(arrays)), pa.string()),
        }
    )


def sent_value(value: Any, array_aware: bool) -> Any:
    """What the plugin sends for a cell, or raises ValueError for an unreadable array."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if array_aware and isinstance(value, str) and value.strip().startswith("["):
        return parse_array_text(value)[1]
    return value


def jsonschema_verdict(row: dict[str, Any], plan: Any) -> bool:
    identifiers, attributes = {}, {}
    try:
        for column in plan.columns:
            value = sent_value(row[column.name], column.wants_array)
            if value is not None:
                (identifiers if column.role.is_identifier else attributes)[column.name] = value
    except ValueError:
        return False
    if not identifiers or not attributes:  # the row rules: an identifier, something to send
        return False
    return IDENTIFIERS.is_valid(identifiers) and ATTRIBUTES.is_valid(attributes)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_compiled_checks_and_jsonschema_agree(table: pa.Table) -> None:
    task = task_for(skip_invalid_records=True)
    plan = plan_columns(table.schema, task, SPEC)
    verdict = RecordValidator(plan, task, SPEC).validate(
        prepare_columns(plan, table.to_batches()[0]), table.num_rows
    )
    fast = verdict.valid.to_pylist()
    slow = [jsonschema_verdict(row, plan) for row in table.to_pylist()]
    assert fast == slow, (table.to_pylist(), verdict.issues)
    # The check before sending prepares without JSON texts: the same verdict, same messages.
    check_only = RecordValidator(plan, task, SPEC).validate(
        prepare_columns(plan, table.to_batches()[0], check_only=True), table.num_rows
    )
    assert check_only.valid.to_pylist() == fast
    assert check_only.issues == verdict.issues


def test_every_column_rule_of_the_default_spec_compiles() -> None:
    # The fast path covers the whole default data spec; jsonschema is only a fallback.
    for section, names in (
        (SPEC.attributes, SPEC.attributes["properties"]),
        (SPEC.identifiers, SPEC.identifiers["properties"]),
    ):
        for name in names:
            compile_schema(resolve_refs(section["properties"][name], section))
    for name in SPEC.event_params["properties"]:
        compile_schema(SPEC.event_param_schema(name))
