"""Operation semantics: REPLACE_ATTRIBUTES replaces arrays only, DELETE_ATTRIBUTES markers are
not spec-checked, USER_AUDIENCES needs ids and names together."""

from __future__ import annotations

import pyarrow as pa
from helpers import bodies


def test_replace_attributes_rejects_single_values_in_a_text_column(run_insider, sandbox) -> None:
    table = pa.table({"uuid": ["u1", "u2", "u3"], "tier": ["platinum", "['gold', 'vip']", None]})
    run = run_insider(table, attribute_operation="REPLACE_ATTRIBUTES", skip_invalid_records=True)
    assert run.code == 0, run.err
    assert run.summary["rejected_by_reason"] == {"tier: not_array": 1, "empty": 1}
    reject = next(r for r in run.rejects if r["rule"] == "not_array")
    assert reject["row"] == 0 and "REPLACE_ATTRIBUTES replaces arrays" in reject["message"]
    users = bodies(sandbox)[0]["users"]
    assert [u["identifiers"]["uuid"] for u in users] == ["u2"]  # u3: nothing to send
    assert users[0]["attributes"]["custom"]["tier"] == ["gold", "vip"]


def test_delete_attribute_markers_are_not_checked_against_the_spec(run_insider, sandbox) -> None:
    table = pa.table({"uuid": ["u1"], "country": ["x"], "age": [True]})
    run = run_insider(table, attribute_operation="DELETE_ATTRIBUTES")
    assert run.code == 0, run.err
    assert run.rows["accepted"] == 1
    (user,) = bodies(sandbox, "/api/user/v1/attribute/delete")[0]["users"]
    assert sorted(user["whole"]) == ["age", "country"]


def test_audiences_need_ids_and_names_together(run_insider) -> None:
    table = pa.table({"uuid": ["u1"], "td_audience_id": pa.array([[1, 2]], pa.list_(pa.int64()))})
    run = run_insider(table, export_mode="USER_AUDIENCES")
    assert run.code == 2
    assert "needs both td_audience_id and td_audience_name" in run.err
    assert "missing td_audience_name" in run.err


def test_rejections_say_what_the_rule_means_and_how_to_fix_the_value(run_insider) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2", "u3", "u4"],
            "phone_number": ["+905321234567", "0532 123 45 67", None, None],
            "country": ["TR", "TR", "Turkey", "TR"],
            "email": [None, None, None, "undefined"],
        }
    )
    run = run_insider(table, skip_invalid_records=True)
    assert run.code == 0, run.err
    messages = {r["row"]: r["message"] for r in run.rejects}
    assert "is not a phone number in E.164 form" in messages[1]
    # The fix names the setting that would help, and the form to write.
    assert "set out.normalize.phone_region, e.g. TR" in messages[1]
    assert "write it in E.164 such as +905321234567" in messages[1]
    assert '"Turkey" is not an ISO 3166-1 alpha-2 country code, such as TR' in messages[2]
    assert "set out.normalize.country_names: true" in messages[2]
    assert '"undefined" is a placeholder, not a real value' in messages[3]
    assert all("^" not in m for m in messages.values())  # no regular expressions
