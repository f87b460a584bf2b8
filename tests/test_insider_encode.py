"""The column-wise encoder against a plain reference: same JSON, on awkward data."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowbulk import RunContext
from arrowbulk.config import validate_section
from arrowbulk.plugins.insider.arrays import WHITESPACE, parse_array_text
from arrowbulk.plugins.insider.columns import Kind, Plan, Role, plan_columns
from arrowbulk.plugins.insider.config import resolve
from arrowbulk.plugins.insider.encode import MAX_BITS, Encoder, Gap
from arrowbulk.plugins.insider.job import prepare_columns
from arrowbulk.plugins.insider.layout import identifier_group, layout
from arrowbulk.plugins.insider.output import InsiderOutput
from arrowbulk.plugins.insider.prepare import Prepared
from arrowbulk.plugins.insider.spec import load_spec


def task_for(**out: Any):
    config = {
        "type": "insider",
        "api_key": "k" * 12,
        "partner_name": "p",
        "endpoint": "http://127.0.0.1:9",
        **out,
    }
    return resolve(
        validate_section("out", config, InsiderOutput.config_schema()), RunContext("r", Path("."))
    )


def reference_value(value: Any, kind: Kind) -> Any:
    """What one cell means to Insider, computed the slow, obvious way."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        iso = utc.replace(tzinfo=None).isoformat()
        return (iso.rstrip("0").rstrip(".") if "." in iso else iso) + "Z"  # no trailing zeros
    if kind is Kind.TEXT_OR_ARRAY and isinstance(value, str) and value.strip().startswith("["):
        try:
            return parse_array_text(value)[1]
        except ValueError:
            return None  # not sent; validation rejects the row
    return value


def encode_users(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    """One JSON text per row: the user (or, for events, the event) object."""
    return Encoder(layout(plan)).encode(prepared, rows)


def identifier_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    return Encoder(identifier_group(plan)).encode(prepared, rows)


def reference_sections(table: pa.Table, **out: Any) -> list[dict[Role, dict[str, Any]]]:
    """Per row: the values to send, by role ("custom" objects not yet nested)."""
    plan = plan_columns(table.schema, task_for(**out), load_spec())
    rows = []
    for row in table.to_pylist():
        sections: dict[Role, dict[str, Any]] = {}
        for column in plan.columns:
            value = reference_value(row[column.name], column.kind)
            if value is not None:
                sections.setdefault(column.role, {})[column.name] = value
        rows.append(sections)
    return rows


def with_custom(
    sections: dict[Role, dict[str, Any]], default: Role, custom: Role
) -> dict[str, Any]:
    """The default members of an object, and its custom ones nested under "custom"."""
    members = dict(sections.get(default, {}))
    if custom in sections:
        members["custom"] = sections[custom]
    return members


def reference_users(table: pa.Table, **out: Any) -> list[dict[str, Any]]:
    return [
        {
            "identifiers": with_custom(sections, Role.IDENTIFIER, Role.CUSTOM_IDENTIFIER),
            "attributes": with_custom(sections, Role.ATTRIBUTE, Role.CUSTOM_ATTRIBUTE),
        }
        for sections in reference_sections(table, **out)
    ]


def fast_users(table: pa.Table, **out: Any) -> list[Any]:
    task = task_for(**out)
    plan = plan_columns(table.schema, task, load_spec())
    batch = table.to_batches()[0]
    return [
        orjson.loads(text)
        for text in encode_users(plan, prepare_columns(plan, batch), batch.num_rows).to_pylist()
    ]


def reference_events(table: pa.Table) -> list[dict[str, Any]]:
    """USER_EVENTS the obvious way: each row's identifiers and its event object."""
    rows = []
    for sections in reference_sections(table, export_mode="USER_EVENTS"):
        event = {**sections.get(Role.EVENT_NAME, {}), **sections.get(Role.TIMESTAMP, {})}
        params = with_custom(sections, Role.EVENT_PARAM, Role.CUSTOM_EVENT_PARAM)
        if params:
            event["event_params"] = params
        identifiers = with_custom(sections, Role.IDENTIFIER, Role.CUSTOM_IDENTIFIER)
        rows.append({"identifiers": identifiers, "event": event})
    return rows


def fast_events(table: pa.Table) -> list[dict[str, Any]]:
    plan = plan_columns(table.schema, task_for(export_mode="USER_EVENTS"), load_spec())
    batch = table.to_batches()[0]
    prepared = prepare_columns(plan, batch)
    events = encode_users(plan, prepared, batch.num_rows).to_pylist()
    keys = identifier_objects(plan, prepared, batch.num_rows).to_pylist()
    return [
        {"identifiers": orjson.loads(key), "event": orjson.loads(event)}
        for key, event in zip(keys, events, strict=True)
    ]


def floats_equal(a: Any, b: Any) -> bool:
    """JSON equality, with floats compared as the doubles they are."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(floats_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(floats_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    return bool(a == b)


AWKWARD = pa.table(
    {
        "uuid": [
            "plain",
            'quote " and \\ backslash',
            "tab\there\nnewline",
            "ctl\x01\x1f",
            "ünï東京🙂",
            "u6",
            "u7",
        ],
        "name": ["", None, "</script>", "\u2028sep", "a" * 300, "x", "y"],
        "score": [0.1, float("nan"), float("inf"), -0.0, 1e300, 123456789012.5, None],
        "count": pa.array([0, -1, 2**62, None, 7, 8, 9], pa.int64()),
        "flag": [True, False, None, True, False, True, False],
        "tags": [
            "['a', 'b']",
            "[]",
            "[1, 2.5, -3e2]",
            "['x, y', 'z']",
            None,
            '["dq", "it\'s"]',
            "not an array",
        ],
        "ids": pa.array([[1, 2], [], None, [3], [4, 5, 6], [], [7]], pa.list_(pa.int64())),
        "words": pa.array(
            [["a", 'b"c'], [], None, ["ü"], ["\\"], [""], ["x"]], pa.list_(pa.string())
        ),
        "at": pa.array(
            [
                dt.datetime(2026, 1, 2, 3, 4, 5, 120000),
                dt.datetime(1970, 1, 1),
                None,
                dt.datetime(2000, 2, 29, 23, 59, 59),
                dt.datetime(2026, 1, 1),
                dt.datetime(2026, 1, 1),
                None,
            ],
            pa.timestamp("us"),
        ),
        "zoned": pa.array(
            [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=3)))] * 7,
            pa.timestamp("s", tz="+03:00"),
        ),
    }
)


@pytest.mark.parametrize(("start", "length"), [(0, 7), (1, 3), (4, 3)])
def test_the_fast_encoder_matches_the_reference_on_awkward_values(start: int, length: int) -> None:
    # Slices too: batches re-cut by the host share buffers with offsets into them.
    table = AWKWARD.slice(start, length)
    fast, reference = fast_users(table), reference_users(table)
    for got, want in zip(fast, reference, strict=True):
        assert floats_equal(got, want), (got, want)


@pytest.mark.parametrize("operation", ["UPSERT", "REPLACE_ATTRIBUTES"])
def test_not_append_is_the_only_difference_between_upsert_and_replace(operation: str) -> None:
    table = pa.table({"uuid": ["u1"], "tags": ["['a']"]})
    user = fast_users(table, attribute_operation=operation)[0]
    assert user.pop("not_append", False) is (operation == "REPLACE_ATTRIBUTES")
    assert user == reference_users(table)[0]


text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(min_value=1, max_value=12))
    column = lambda strategy: draw(st.lists(strategy, min_size=rows, max_size=rows))  # noqa: E731
    return pa.table(
        {
            "uuid": pa.array(column(text), pa.string()),
            "name": pa.array(column(st.none() | text), pa.string()),
            "amount": pa.array(
                column(st.none() | st.floats(allow_nan=True, allow_infinity=True)), pa.float64()
            ),
            "visits": pa.array(
                column(st.none() | st.integers(min_value=-(2**53), max_value=2**53)), pa.int64()
            ),
            "labels": pa.array(
                column(st.none() | st.lists(text, max_size=4)), pa.list_(pa.string())
            ),
            "scores": pa.array(
                column(
                    st.none()
                    | st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3)
                ),
                pa.list_(pa.float64()),
            ),
            "free": pa.array(
                column(
                    st.none()
                    | text
                    | st.lists(text, max_size=3).map(
                        lambda xs: (
                            "["
                            + ", ".join(repr(x) for x in xs if "'" not in x and "\\" not in x)
                            + "]"
                        )
                    )
                ),
                pa.string(),
            ),
        }
    )


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_the_fast_encoder_matches_the_reference_on_random_tables(table: pa.Table) -> None:
    for got, want in zip(fast_users(table), reference_users(table), strict=True):
        assert floats_equal(got, want), (got, want)


def reference_deletions(table: pa.Table) -> list[dict[str, Any]]:
    """DELETE_ATTRIBUTES the obvious way: single values by name, array values by value."""
    plan = plan_columns(
        table.schema, task_for(attribute_operation="DELETE_ATTRIBUTES"), load_spec()
    )
    users = []
    for row in table.to_pylist():
        user: dict[str, Any] = {"identifiers": {}}
        parts: dict[bool, dict[str, Any]] = {False: {}, True: {}}  # custom? -> whole / partial
        for column in plan.columns:
            value = reference_value(row[column.name], column.kind)
            if value is None:
                continue
            if column.role.is_identifier:
                user["identifiers"][column.name] = value
                continue
            part = parts[column.role.is_custom]
            if isinstance(value, list):
                part.setdefault("partial", {})[column.name] = value
            else:
                part.setdefault("whole", []).append(column.name)
        user.update(parts[False])
        if parts[True]:
            user["custom"] = parts[True]
        users.append(user)
    return users


@st.composite
def wide_tables(draw: st.DrawFn) -> pa.Table:
    """Many optional default and custom attributes: gaps with more bits than one table holds."""
    rows = draw(st.integers(min_value=1, max_value=10))
    column = lambda strategy: draw(st.lists(strategy, min_size=rows, max_size=rows))  # noqa: E731
    maybe_text = st.none() | text
    arrays = st.lists(st.sampled_from(["a", "b", "c"]), max_size=2).map(repr)
    columns: dict[str, pa.Array] = {"uuid": pa.array(column(text), pa.string())}
    for name in ("name", "surname", "gender", "city", "language", "lo"):
        columns[name] = pa.array(column(maybe_text), pa.string())
    columns["static_segment_id"] = pa.array(
        column(st.none() | st.lists(st.integers(0, 99), max_size=3)), pa.list_(pa.int64())
    )
    for name in ("c1", "c2", "c3", "c4", "c5"):
        columns[name] = pa.array(column(maybe_text | arrays), pa.string())
    return pa.table(columns)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_tables())
def test_deletions_match_the_reference_on_wide_random_tables(table: pa.Table) -> None:
    got = fast_users(table, attribute_operation="DELETE_ATTRIBUTES")
    for user, want in zip(got, reference_deletions(table), strict=True):
        assert floats_equal(user, want), (user, want)


def test_wide_layouts_cut_their_gaps_so_each_table_stays_small() -> None:
    names = ["uuid", "name", "surname", "gender", "city", "language", "lo", "c1", "c2", "c3"]
    table = pa.table({name: ["x"] for name in names})
    plan = plan_columns(
        table.schema, task_for(attribute_operation="DELETE_ATTRIBUTES"), load_spec()
    )
    encoder = Encoder(layout(plan))
    gaps = [piece for piece in encoder.pieces if isinstance(piece, Gap)]
    assert all(len(gap.bits) <= MAX_BITS for gap in gaps)
    values = len(encoder.pieces) - len(gaps)
    assert len(gaps) > values + 1  # the names' list needed more than one gap


def test_array_texts_are_trimmed_of_what_python_calls_white_space() -> None:
    assert set(WHITESPACE) == {c for c in map(chr, range(0x110000)) if c.isspace()}
    table = pa.table(
        {"uuid": ["a", "b", "c"], "tags": ["\x85['x']", "\u3000[1, 2] \x1c", "\x1cword"]}
    )
    assert [u["attributes"] for u in fast_users(table)] == [
        {"custom": {"tags": ["x"]}},
        {"custom": {"tags": [1, 2]}},
        {"custom": {"tags": "\x1cword"}},
    ]


EVENTS = pa.table(
    {
        "uuid": ["u1", "u1", "u2", "u3"],
        "event_name": ["purchase", "cart_page_view", "login", "purchase"],
        "timestamp": pa.array(
            [dt.datetime(2026, 11, 1, 10, 0, 0, 250000, tzinfo=dt.UTC)] * 4,
            pa.timestamp("ms", tz="UTC"),
        ),
        "currency": ["USD", None, None, "EUR"],
        "unit_sale_price": [1.5, None, float("nan"), 2.0],
        "quantity": pa.array([1, None, None, 3], pa.int64()),
        "taxonomy": ["['shoes', 'men']", None, "[]", "['a \\'b\\'']"],
        "coupon": ['say "hi"', None, None, "\u3000"],
    }
)


@pytest.mark.parametrize(("start", "length"), [(0, 4), (1, 2)])
def test_the_fast_event_encoder_matches_the_reference(start: int, length: int) -> None:
    table = EVENTS.slice(start, length)
    for got, want in zip(fast_events(table), reference_events(table), strict=True):
        assert floats_equal(got, want), (got, want)


def test_list_texts_of_a_slice_use_only_the_slice_items() -> None:
    """Slices of list columns (every chunk of a batch is one) give the same texts as copies."""
    from arrowbulk.plugins.insider.prepare import json_number_lists, json_string_lists

    numbers = pa.array([[1.5, 2.0], None, [], [3.25], [4.0, 5.0, 6.0]], pa.list_(pa.float64()))
    strings = pa.array([["a"], ['q"uote'], None, [], ["x", "y"]], pa.list_(pa.string()))
    for start, length in ((0, 5), (1, 3), (3, 2), (4, 1), (2, 0)):
        piece_n, piece_s = numbers.slice(start, length), strings.slice(start, length)
        copy_n = pa.array(piece_n.to_pylist(), piece_n.type)
        copy_s = pa.array(piece_s.to_pylist(), piece_s.type)
        assert json_number_lists(piece_n).to_pylist() == json_number_lists(copy_n).to_pylist()
        assert json_string_lists(piece_s).to_pylist() == json_string_lists(copy_s).to_pylist()
    assert json_string_lists(strings.slice(1, 1)).to_pylist() == ['["q\\"uote"]']
    assert json_number_lists(numbers.slice(4, 1)).to_pylist() == ["[4,5,6]"]


def test_array_texts_parsed_once_per_distinct_text_equal_those_parsed_row_by_row() -> None:
    from arrowbulk.plugins.insider.arrays import (
        SAMPLE,
        parse_array_texts,
        parse_distinct_array_texts,
    )
    from arrowbulk.plugins.insider.arrays import repeated as encoded_if_repeated

    kinds = ["['a', 'b']", "[]", "[1, 2.5]", "['x, y'", None, "plain", " [3]", "['ü', \"q\"]"]
    # Repeated (the distinct path) and mostly distinct (the plain path), sliced as the host does.
    rows = 3 * SAMPLE
    repeated = pa.array([kinds[i % len(kinds)] for i in range(rows)]).slice(3, rows - 10)
    distinct = pa.array([f"['t{i}', 'u']" if i % 5 else None for i in range(rows)])
    assert encoded_if_repeated(repeated) is not None and encoded_if_repeated(distinct) is None
    for texts in (repeated, distinct):
        once, each = parse_distinct_array_texts(texts), parse_array_texts(texts)
        for field in ("is_array", "strings", "numbers", "errors"):
            assert getattr(once, field).equals(getattr(each, field)), field
