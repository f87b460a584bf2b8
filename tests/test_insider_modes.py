"""Every export mode and operation against the sandbox: the bodies sent and the profiles left."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from helpers import bodies


def profile_of(sandbox, **identifiers):
    matches = [
        p
        for p in sandbox.profiles()
        if all(p["identifiers"].get(k) == v for k, v in identifiers.items())
    ]
    assert len(matches) == 1, (identifiers, sandbox.profiles())
    return matches[0]


def seed_users(run_insider) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2"],
            "email": ["ada@example.com", "grace@example.com"],
            "name": ["Ada", "Grace"],
            "static_segment_id": pa.array([[1, 2], [3]], pa.list_(pa.int64())),
            "tier": ["gold", "silver"],
            "tags": ["['a', 'b']", "['c']"],
        }
    )
    assert run_insider(table).code == 0


def test_user_attributes_upsert(run_insider, sandbox) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2"],
            "email": ["ada@example.com", None],
            "name": ["Ada", "Grace"],
            "birthday": pa.array([dt.datetime(1990, 5, 1), None], pa.timestamp("s")),
            "email_optin": [True, False],
            "static_segment_id": pa.array([[1, 2], []], pa.list_(pa.int64())),
            "tier": ["gold", None],
            "tags": ["['a', 'b']", "[1, 2]"],
            "score": [9.5, float("nan")],
        }
    )
    run = run_insider(table, trigger_data_stream=True)
    assert run.code == 0, run.err
    assert bodies(sandbox) == [
        {
            "users": [
                {
                    "identifiers": {"uuid": "u1", "email": "ada@example.com"},
                    "attributes": {
                        "name": "Ada",
                        "birthday": "1990-05-01T00:00:00Z",
                        "email_optin": True,
                        "static_segment_id": [1, 2],
                        "custom": {"tier": "gold", "tags": ["a", "b"], "score": 9.5},
                    },
                },
                {
                    "identifiers": {"uuid": "u2"},
                    "attributes": {
                        "name": "Grace",
                        "email_optin": False,
                        "static_segment_id": [],
                        "custom": {"tags": [1, 2]},
                    },
                },
            ],
            "skip_hook": False,
        }
    ]
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"] == {
        "tier": "gold",
        "tags": ["a", "b"],
        "score": 9.5,
    }
    assert run.rows == {"read": 2, "accepted": 2, "rejected": 0, "unsent": 0}


def test_upsert_appends_arrays(run_insider, sandbox) -> None:
    seed_users(run_insider)
    run = run_insider(pa.table({"uuid": ["u1"], "tags": ["['z']"]}))
    assert run.code == 0
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"]["tags"] == ["a", "b", "z"]
    assert bodies(sandbox)[-1]["skip_hook"] is True
    assert "not_append" not in bodies(sandbox)[-1]["users"][0]


def test_user_attributes_replace_attributes(run_insider, sandbox) -> None:
    seed_users(run_insider)
    table = pa.table(
        {
            "uuid": ["u1", "u2"],
            "tags": ["['x']", "[]"],
            "static_segment_id": pa.array([[9], None], pa.list_(pa.int64())),
        }
    )
    run = run_insider(table, attribute_operation="REPLACE_ATTRIBUTES")
    assert run.code == 0, run.err
    assert bodies(sandbox)[-1]["users"] == [
        {
            "identifiers": {"uuid": "u1"},
            "attributes": {"static_segment_id": [9], "custom": {"tags": ["x"]}},
            "not_append": True,
        },
        {"identifiers": {"uuid": "u2"}, "attributes": {"custom": {"tags": []}}, "not_append": True},
    ]
    assert profile_of(sandbox, uuid="u1")["attributes"]["static_segment_id"] == [9]
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"]["tags"] == ["x"]
    assert profile_of(sandbox, uuid="u2")["attributes"]["custom"]["tags"] == []
    assert profile_of(sandbox, uuid="u2")["attributes"]["static_segment_id"] == [3]


@pytest.mark.parametrize("spelling", ["DELETE_ATTRIBUTES", "DELET_ATTRIBUTES"])
def test_user_attributes_delete_attributes(run_insider, sandbox, spelling: str) -> None:
    seed_users(run_insider)
    table = pa.table(
        {
            "uuid": ["u1", "u2"],
            "name": ["x", None],
            "static_segment_id": pa.array([[2], None], pa.list_(pa.int64())),
            "tier": ["x", None],
            "tags": ["['b']", "['c']"],
        }
    )
    run = run_insider(table, attribute_operation=spelling)
    assert run.code == 0, run.err
    assert bodies(sandbox, "/api/user/v1/attribute/delete") == [
        {
            "users": [
                {
                    "identifiers": {"uuid": "u1"},
                    "whole": ["name"],
                    "partial": {"static_segment_id": [2]},
                    "custom": {"whole": ["tier"], "partial": {"tags": ["b"]}},
                },
                {"identifiers": {"uuid": "u2"}, "custom": {"partial": {"tags": ["c"]}}},
            ]
        }
    ]
    ada = profile_of(sandbox, uuid="u1")["attributes"]
    assert (
        "name" not in ada and ada["static_segment_id"] == [1] and ada["custom"] == {"tags": ["a"]}
    )
    assert profile_of(sandbox, uuid="u2")["attributes"]["custom"] == {"tier": "silver", "tags": []}


def test_user_attributes_delete_identifiers(run_insider, sandbox) -> None:
    seed_users(run_insider)
    run = run_insider(
        pa.table({"email": ["ada@example.com", "grace@example.com"]}),
        attribute_operation="DELETE_IDENTIFIERS",
    )
    assert run.code == 0, run.err
    deletes = [r for r in sandbox.requests if r["path"] == "/api/user/v1/identity"]
    assert [r["method"] for r in deletes] == ["DELETE", "DELETE"]  # one request per row
    sent = sorted(
        r["body"]["identifiers"]["email"] for r in deletes
    )  # one request per row, in parallel
    assert sent == ["ada@example.com", "grace@example.com"]
    assert all(
        r["body"] == {"identifiers": {"email": r["body"]["identifiers"]["email"]}} for r in deletes
    )
    assert "email" not in profile_of(sandbox, uuid="u1")["identifiers"]
    assert run.summary["details"]["requests"] == 2


def test_delete_identifiers_of_an_unknown_user_is_rejected_with_the_server_reason(
    run_insider, sandbox
) -> None:
    seed_users(run_insider)
    run = run_insider(
        pa.table({"email": ["nobody@example.com", "ada@example.com"]}),
        attribute_operation="DELETE_IDENTIFIERS",
        skip_invalid_records=True,
    )
    assert run.code == 0
    assert run.rows == {"read": 2, "accepted": 1, "rejected": 1, "unsent": 0}
    assert run.rejects[0]["row"] == 0 and run.rejects[0]["stage"] == "server"
    assert "no such user" in run.rejects[0]["message"]


def test_user_attributes_delete_pii(run_insider, sandbox) -> None:
    seed_users(run_insider)
    run = run_insider(
        pa.table({"uuid": ["u1"], "email": ["ada@example.com"]}), attribute_operation="DELETE_PII"
    )
    assert run.code == 0, run.err
    assert bodies(sandbox, "/api/user/v1/anonymize") == [
        {"identifiers": {"uuid": "u1", "email": "ada@example.com"}}
    ]
    remaining = next(
        p for p in sandbox.profiles() if p["attributes"].get("custom", {}).get("tier") == "gold"
    )
    assert remaining["identifiers"] == {} and "name" not in remaining["attributes"]


def test_user_events(run_insider, sandbox) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    table = pa.table(
        {
            "uuid": ["u1", "u2", "u1"],
            "event_name": ["purchase", "homepage_view", "coupon_used"],
            "timestamp": pa.array(
                [now, now, now - dt.timedelta(days=1)], pa.timestamp("s", tz="UTC")
            ),
            "event_group_id": ["O-1", None, None],
            "currency": ["USD", None, None],
            "unit_sale_price": [9.5, None, None],
            "quantity": [1, None, None],
            "taxonomy": ["['shoes', 'men']", None, None],
            "coupon": [None, None, "X"],
        }
    )
    run = run_insider(table, export_mode="USER_EVENTS")
    assert run.code == 0, run.err
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    yesterday = (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert bodies(sandbox) == [
        {
            "users": [
                {
                    "identifiers": {"uuid": "u1"},
                    "events": [
                        {
                            "event_name": "purchase",
                            "timestamp": stamp,
                            "event_params": {
                                "event_group_id": "O-1",
                                "currency": "USD",
                                "unit_sale_price": 9.5,
                                "quantity": 1,
                                "taxonomy": ["shoes", "men"],
                            },
                        },
                        {
                            "event_name": "coupon_used",
                            "timestamp": yesterday,
                            "event_params": {"custom": {"coupon": "X"}},
                        },
                    ],
                },
                {
                    "identifiers": {"uuid": "u2"},
                    "events": [{"event_name": "homepage_view", "timestamp": stamp}],
                },
            ],
            "skip_hook": True,
        }
    ]
    assert [e["event_name"] for e in profile_of(sandbox, uuid="u1")["events"]] == [
        "purchase",
        "coupon_used",
    ]
    assert run.rows["accepted"] == 3


def audience_table(ids, names) -> pa.Table:
    return pa.table(
        {
            "uuid": ["u1"],
            "td_audience_id": pa.array([ids], pa.list_(pa.int64())),
            "td_audience_name": [names],
        }
    )


def test_user_audiences_append(run_insider, sandbox) -> None:
    assert run_insider(audience_table([1, 2], "['A', 'B']"), export_mode="USER_AUDIENCES").code == 0
    run = run_insider(
        audience_table([3], "['C']"), export_mode="USER_AUDIENCES", audience_operation="APPEND"
    )
    assert run.code == 0, run.err
    assert bodies(sandbox)[-1]["users"] == [
        {
            "identifiers": {"uuid": "u1"},
            "attributes": {"custom": {"td_audience_id": [3], "td_audience_name": ["C"]}},
        }
    ]
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"] == {
        "td_audience_id": [1, 2, 3],
        "td_audience_name": ["A", "B", "C"],
    }


def test_user_audiences_replace(run_insider, sandbox) -> None:
    assert run_insider(audience_table([1, 2], "['A', 'B']"), export_mode="USER_AUDIENCES").code == 0
    run = run_insider(
        audience_table([3], "['C']"), export_mode="USER_AUDIENCES", audience_operation="REPLACE"
    )
    assert run.code == 0, run.err
    assert bodies(sandbox)[-1]["users"][0]["not_append"] is True
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"] == {
        "td_audience_id": [3],
        "td_audience_name": ["C"],
    }


def test_user_audiences_remove(run_insider, sandbox) -> None:
    assert (
        run_insider(audience_table([1, 2, 3], "['A', 'B', 'C']"), export_mode="USER_AUDIENCES").code
        == 0
    )
    run = run_insider(
        audience_table([2], "['B']"), export_mode="USER_AUDIENCES", audience_operation="REMOVE"
    )
    assert run.code == 0, run.err
    assert bodies(sandbox, "/api/user/v1/attribute/delete") == [
        {
            "users": [
                {
                    "identifiers": {"uuid": "u1"},
                    "custom": {"partial": {"td_audience_id": [2], "td_audience_name": ["B"]}},
                }
            ]
        }
    ]
    assert profile_of(sandbox, uuid="u1")["attributes"]["custom"] == {
        "td_audience_id": [1, 3],
        "td_audience_name": ["A", "C"],
    }
