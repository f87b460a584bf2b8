"""Insider's data spec: schema-level refusals before any request, record-level rejections."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from helpers import bodies

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("table", "out", "expected"),
    [
        (
            pa.table({"Email": ["a@b.co"], "name": ["x"]}),
            {},
            "column names must match ^[a-z][a-z0-9_]*$",
        ),
        (pa.table({"uuid": ["u"], "profile": pa.array([{"a": 1}])}), {}, "profile (struct<"),
        (
            pa.table(
                {"uuid": ["u"], "m": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64()))}
            ),
            {},
            "m (map<string, int64",
        ),
        (
            pa.table({"uuid": ["u"], "flags": pa.array([[True]], pa.list_(pa.bool_()))}),
            {},
            "flags (list<",
        ),
        (
            pa.table({"uuid": ["u"], "n": pa.array([[["a"]]], pa.list_(pa.list_(pa.string())))}),
            {},
            "n (list<",
        ),
        (pa.table({"uuid": ["u"], "objs": pa.array([[{"a": 1}]])}), {}, "objs (list<"),
        (pa.table({"name": ["x"]}), {}, "no identifier column"),
        (
            pa.table({"uuid": ["u"], "name": ["x"]}),
            {"custom_identifier_fields": "loyalty_id"},
            "custom_identifier_fields names loyalty_id",
        ),
        (
            pa.table({"uuid": ["u"], "name": ["x"]}),
            {"export_mode": "USER_EVENTS"},
            "USER_EVENTS needs the columns event_name, timestamp",
        ),
        (
            pa.table({"uuid": ["u"], "name": ["x"]}),
            {"export_mode": "USER_AUDIENCES"},
            "remove name",
        ),
        (
            pa.table({"uuid": ["u"], "name": ["x"]}),
            {"attribute_operation": "REPLACE_ATTRIBUTES"},
            "not arrays of strings or numbers: name",
        ),
        (
            pa.table({"uuid": ["u"], "age": ["30"]}),
            {},
            "age (a default attribute) must be a number, but the column is string",
        ),
        (
            pa.table({"uuid": [1], "name": ["x"]}),
            {},
            "uuid (an identifier) must be a string, but the column is int64",
        ),
        (
            pa.table({"uuid": ["u"], "email_optin": ["yes"]}),
            {"normalize": False},  # on, yes/no texts are read as booleans
            "email_optin (a default attribute) must be a boolean",
        ),
        (
            pa.table({"uuid": ["u"], "name": ["x"]}),
            {"attribute_operation": "DELETE_PII"},
            "takes identifier columns only; remove name",
        ),
        (
            pa.table({"uuid": ["u"], **{f"c{i}": ["x"] for i in range(256)}}),
            {},
            "256 custom attributes; Insider allows at most 255",
        ),
    ],
    ids=[
        "name",
        "struct",
        "map",
        "list-of-bool",
        "nested-list",
        "list-of-struct",
        "no-identifier",
        "custom-id-missing",
        "events-columns",
        "audience-columns",
        "replace-scalars",
        "age-string",
        "uuid-number",
        "optin-string",
        "pii-extra",
        "255",
    ],
)
def test_schema_level_refusals_name_the_columns_and_send_nothing(
    run_insider, sandbox, table, out, expected
) -> None:
    run = run_insider(table, **out)
    assert run.code == 2, run.out
    assert expected in run.err, run.err
    assert sandbox.requests == []


def test_255_custom_attributes_are_fine(run_insider) -> None:
    run = run_insider(pa.table({"uuid": ["u"], **{f"c{i}": ["x"] for i in range(255)}}))
    assert run.code == 0, run.err


ATTRIBUTE_CASES = [
    # column, arrow type, valid value, invalid value, rule
    ("email", pa.string(), "ada@example.com", "ada-at-example", "email: pattern"),
    ("phone_number", pa.string(), "+905551112233", "05551112233", "phone_number: pattern"),
    ("uuid", pa.string(), "u-1", "undefined", "uuid: not"),
    ("birthday", pa.string(), "1990-05-01T00:00:00Z", "01/05/1990", "birthday: pattern"),
    ("language", pa.string(), "en_US", "English", "language: pattern"),
    ("country", pa.string(), "TR", "Turkey", "country: pattern"),
    ("age", pa.int64(), 30, -1, "age: minimum"),
    ("static_segment_id", pa.string(), "[1, 2]", "['a']", "static_segment_id: items"),
    ("tags", pa.string(), "['a', 'b']", "['a', 1]", "tags: array"),
    ("tags", pa.string(), "[1.5, 2]", "[true]", "tags: array"),
    ("tags", pa.string(), "[]", "['a'", "tags: array"),
    ("tags", pa.list_(pa.string()), ["a"], ["a", None], "tags: array"),
]


@pytest.mark.parametrize(
    ("column", "kind", "good", "bad", "reason"),
    ATTRIBUTE_CASES,
    ids=[f"{c[0]}-{c[3]}" for c in ATTRIBUTE_CASES],
)
def test_record_rules_of_attributes(run_insider, sandbox, column, kind, good, bad, reason) -> None:
    ids = {"email": "x@example.com"} if column != "email" else {"uuid": "u-9"}
    table = pa.table(
        {
            **{k: [v, v] for k, v in ids.items()},
            column: pa.array([good, bad], kind),
            "name": ["Valid", "Invalid"],
        }
    )
    run = run_insider(table, skip_invalid_records=True)
    assert run.code == 0, run.err
    assert run.rows == {"read": 2, "accepted": 1, "rejected": 1, "unsent": 0}
    assert run.summary["rejected_by_reason"] == {reason: 1}
    [reject] = run.rejects
    assert reject["row"] == 1 and reject["stage"] == "validation"
    assert reject["record"]["name"] == "Invalid"
    assert [u["attributes"]["name"] for u in bodies(sandbox)[0]["users"]] == ["Valid"]


def event_table(names, stamps, **params) -> pa.Table:
    return pa.table(
        {
            "uuid": [f"u{i}" for i in range(len(names))],
            "event_name": names,
            "timestamp": pa.array(stamps, pa.timestamp("s", tz="UTC")),
            **params,
        }
    )


@pytest.mark.parametrize(
    ("table", "reason", "message"),
    [
        (
            event_table(["page_view", "PageView"], [NOW, NOW]),
            "event_name: pattern",
            '"PageView" is not an event name in lowercase letters, digits and . _ -, such as page_view; write it in lowercase',
        ),
        (
            event_table(
                ["purchase", "purchase"],
                [NOW, NOW],
                event_group_id=["O1", "O2"],
                currency=["USD", "USD"],
                unit_sale_price=[1.0, 2.0],
                quantity=[1, None],
            ),
            "quantity: required",
            "purchase events require the parameter 'quantity'",
        ),
        (
            event_table(
                ["cart_page_view", "cart_page_view"],
                [NOW, NOW],
                event_group_id=["O1", "O2"],
                currency=["USD", "US$"],
                unit_sale_price=[1.0, 2.0],
            ),
            "currency: pattern",
            '"US$" is not an ISO 4217 currency code, such as USD; write the three-letter code',
        ),
        (
            event_table(["coupon_used", "coupon_used"], [NOW, NOW - dt.timedelta(days=120)]),
            "timestamp: retention",
            "older than Insider keeps such events (90 days)",
        ),
        (
            event_table(["homepage_view", "homepage_view"], [NOW, None]),
            "timestamp: required",
            "timestamp is required",
        ),
        (
            event_table(["x", "y"], [NOW, NOW], quantity=[1.0, 1.5]),
            "quantity: type",
            "1.5 is a float; the spec wants integer",
        ),
    ],
    ids=["name", "purchase-required", "currency", "retention", "no-timestamp", "integer"],
)
def test_record_rules_of_events(run_insider, sandbox, table, reason, message) -> None:
    run = run_insider(table, export_mode="USER_EVENTS", skip_invalid_records=True)
    assert run.code == 0, run.err
    assert run.summary["rejected_by_reason"] == {reason: 1}
    assert message in run.rejects[0]["message"]
    assert run.rejects[0]["row"] == 1
    assert len(bodies(sandbox)[0]["users"]) == 1


def test_retention_can_be_extended_per_event(run_insider, sandbox) -> None:
    table = event_table(["coupon_used"], [NOW - dt.timedelta(days=120)])
    assert (
        run_insider(table, export_mode="USER_EVENTS", skip_invalid_records=True).rows["rejected"]
        == 1
    )
    run = run_insider(table, export_mode="USER_EVENTS", event_retention_days={"coupon_used": 365})
    assert run.code == 0 and run.rows["accepted"] == 1


def test_naive_timestamps_are_taken_as_utc(run_insider, sandbox) -> None:
    naive = NOW.replace(tzinfo=None)
    run = run_insider(
        pa.table(
            {"uuid": ["u"], "event_name": ["x"], "timestamp": pa.array([naive], pa.timestamp("ms"))}
        ),
        export_mode="USER_EVENTS",
    )
    assert run.code == 0
    assert bodies(sandbox)[0]["users"][0]["events"][0]["timestamp"] == NOW.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_audience_arrays_must_pair_up(run_insider, sandbox) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2"],
            "td_audience_id": ["[1, 2]", "[1, 2]"],
            "td_audience_name": ["['A', 'B']", "['A']"],
        }
    )
    run = run_insider(table, export_mode="USER_AUDIENCES", skip_invalid_records=True)
    assert run.summary["rejected_by_reason"] == {"td_audience_name: audience_length": 1}
    assert "td_audience_id has 2 values but td_audience_name has 1" in run.rejects[0]["message"]


def test_a_row_without_any_identifier_value_is_rejected(run_insider, sandbox) -> None:
    run = run_insider(
        pa.table({"uuid": ["u1", None], "email": [None, None], "name": ["a", "b"]}),
        skip_invalid_records=True,
    )
    assert run.summary["rejected_by_reason"] == {"identifier": 1}
    assert "no identifier value" in run.rejects[0]["message"]


def test_a_row_with_nothing_to_send_is_rejected(run_insider, sandbox) -> None:
    run = run_insider(
        pa.table({"uuid": ["u1", "u2"], "name": ["a", None]}), skip_invalid_records=True
    )
    assert run.summary["rejected_by_reason"] == {"empty": 1}


def test_without_skipping_a_bad_last_row_stops_the_job_before_anything_is_sent(
    run_insider, sandbox
) -> None:
    emails = [f"user{i}@example.com" for i in range(2999)] + ["broken"]
    run = run_insider(
        pa.table({"email": emails, "name": ["x"] * 3000}), max_records_per_request=100
    )
    assert run.code == 1
    assert 'row 2999, column email, rule pattern: "broken" is not an email address' in run.err
    assert "Nothing was sent" in run.err
    assert sandbox.requests == []
    assert run.rows == {"read": 3000, "accepted": 0, "rejected": 1, "unsent": 2999}
    assert run.summary["rejected_by_reason"] == {"email: pattern": 1}
    assert run.rejects[0]["row"] == 2999


def test_with_skipping_the_job_succeeds_even_if_no_record_is_valid(run_insider, sandbox) -> None:
    run = run_insider(
        pa.table({"email": ["bad1", "bad2"], "name": ["x", "y"]}), skip_invalid_records=True
    )
    assert run.code == 0, run.err
    assert run.rows == {"read": 2, "accepted": 0, "rejected": 2, "unsent": 0}
    assert sandbox.requests == []
    assert {r["rule"] for r in run.rejects} == {"pattern"}


def test_validate_counts_invalid_records_by_reason_and_sends_nothing(
    cli, sandbox, tmp_path
) -> None:
    import pyarrow.parquet as pq
    from helpers import write_insider_job

    pq.write_table(
        pa.table({"email": ["a@b.co", "bad", "worse"], "name": ["x", "y", "z"]}),
        tmp_path / "u.parquet",
    )
    job = write_insider_job(tmp_path, sandbox.url, "u.parquet", skip_invalid_records=True)
    result = cli("validate", job)
    assert result.code == 0, result.err
    assert "records: 3 checked, 2 invalid" in result.out
    rule = next(line for line in result.out.splitlines() if line.startswith("email: pattern"))
    assert rule.split()[2] == "2"  # records breaking it
    assert "an email address (name@domain.tld)" in rule  # what the rule means
    assert 'row 1: "bad"; row 2: "worse"' in rule  # examples with their rows
    assert sandbox.requests == []


def test_every_time_of_years_1_to_9999_has_a_text_of_insiders_forms() -> None:
    # The proof by example behind checking typed timestamps without their texts.
    import json
    import random
    from pathlib import Path

    from arrowbulk.plugins.insider.timetext import (
        RFC3339_FORMS,
        outside_four_digit_years,
        rfc3339,
    )

    schemas = Path(__file__).parent.parent / "schemas" / "insider"
    birthday = json.loads((schemas / "attributes.json").read_text())["properties"]["birthday"]
    stamp = json.loads((schemas / "event.json").read_text())["properties"]["timestamp"]
    assert {birthday["pattern"], stamp["pattern"]} == RFC3339_FORMS
    pick = random.Random(7)
    moments = [
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2000, 2, 29, 12, 0, 0, 500),
        *[
            dt.datetime(1, 1, 1)
            + dt.timedelta(microseconds=pick.randrange(315_537_897_600 * 10**6))
            for _ in range(2000)
        ],
    ]
    recent = [m for m in moments if 1678 <= m.year <= 2261]  # what nanoseconds can hold
    arrays = [
        pa.array(moments, pa.timestamp(unit, tz))
        for unit in ("s", "ms", "us")
        for tz in (None, "+03:00")
    ]
    arrays += [pa.array(recent, pa.timestamp("ns")), pa.array([m.date() for m in moments])]
    arrays.append(pa.array([m.date() for m in moments]).cast(pa.date64()))
    for times in arrays:
        texts = rfc3339(times)
        assert not pa.compute.any(outside_four_digit_years(times)).as_py()
        for pattern in RFC3339_FORMS:
            assert pa.compute.all(pa.compute.match_substring_regex(texts, pattern)).as_py(), (
                times.type,
                pattern,
            )


def test_times_past_year_9999_break_the_pattern_whether_checked_first_or_while_sending(
    run_insider, sandbox
) -> None:
    # 0000-12-31 has Insider's form (four digits) and is sent; 10000-01-01 has not.
    ticks = pa.array([0, 253_402_300_800, -62_135_596_801], pa.int64())
    table = pa.table(
        {"uuid": ["u0", "u1", "u2"], "birthday": ticks.cast(pa.timestamp("s")), "name": ["x"] * 3}
    )
    stopped = run_insider(table)  # defaults: every record checked first, on its times
    assert stopped.code == 1
    assert 'row 1, column birthday, rule pattern: "10000-01-01T00:00:00Z" is not' in stopped.err
    assert sandbox.requests == []
    skipped = run_insider(table, skip_invalid_records=True)
    assert skipped.rows == {"read": 3, "accepted": 2, "rejected": 1, "unsent": 0}
    assert skipped.summary["rejected_by_reason"] == {"birthday: pattern": 1}
    # Python has no datetime past 9999: the reject line holds Arrow's text of the value.
    assert skipped.rejects[0]["record"] == {
        "uuid": "u1",
        "birthday": "10000-01-01 00:00:00",
        "name": "x",
    }
    sent = [u["attributes"]["birthday"] for u in bodies(sandbox)[0]["users"]]
    assert sent == ["1970-01-01T00:00:00Z", "0000-12-31T23:59:59Z"]


def test_the_check_before_sending_refuses_events_older_than_insider_keeps(
    run_insider, sandbox
) -> None:
    old = NOW - dt.timedelta(days=120)
    run = run_insider(event_table(["x", "coupon_used"], [NOW, old]), export_mode="USER_EVENTS")
    assert run.code == 1 and sandbox.requests == []
    text = old.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'row 1, column timestamp, rule retention: a coupon_used event from "{text}"' in run.err
