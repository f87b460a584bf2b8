"""Warehouse and CRM values into Insider: normalized where unambiguous, explained where not.

The tables are shaped like what the issue measured: a warehouse table with clean Arrow types
but national phones, lowercase countries and uppercase languages; a CRM CSV with headers as
people type them, text dates, yes/no booleans, names of countries; events whose timestamps
are texts with and without offsets. Each runs end to end into the sandbox over HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pytest
import yaml
from helpers import API_KEY, PARTNER, bodies

from arrowbulk.plugins.insider.normalize import Normalizer, Rule, Settings, rule_of
from arrowbulk.plugins.insider.spec import load_spec

ROWS = 10_000


def warehouse_table() -> pa.Table:
    """10,000 users; a third with national phones, a sixth lowercase countries, 334 'EN'."""
    rows = range(ROWS)
    phones = [f"0532{i:07d}" if i % 3 == 0 else f"+90532{i:07d}" for i in rows]
    countries = ["de" if i % 6 == 1 else "DE" for i in rows]
    languages = ["EN" if i % 30 == 2 and i < 334 * 30 else "en" for i in rows]
    return pa.table(
        {
            "uuid": [f"u{i}" for i in rows],
            "phone_number": phones,
            "country": countries,
            "language": languages,
            "birthday": pa.array([dt.date(1990, 1, 1) + dt.timedelta(days=i % 9000) for i in rows]),
            "email_optin": pa.array([i % 2 == 0 for i in rows]),
            "interests": pa.array([["a", "b"]] * ROWS, pa.list_(pa.string())),
        }
    )


def test_the_warehouse_table_counts_turn_into_accepted_users(run_insider, sandbox) -> None:
    table = warehouse_table()
    national = sum(1 for p in table["phone_number"].to_pylist() if p.startswith("0"))
    lower = table["country"].to_pylist().count("de")
    upper = table["language"].to_pylist().count("EN")
    assert (national, lower, upper) == (3_334, 1_667, 334)

    strict = run_insider(table, skip_invalid_records=True, normalize=False)
    assert strict.rows["rejected"] == 5_335  # every row with at least one such value

    # Defaults: case is normalized; a national number's country is not ours to guess.
    default = run_insider(table, skip_invalid_records=True)
    assert default.code == 0, default.err
    assert default.rows == {"read": ROWS, "accepted": ROWS - 3_334, "rejected": 3_334, "unsent": 0}
    assert default.summary["details"]["normalized"] == {"country": 1_667, "language": 334}
    message = default.rejects[0]["message"]
    assert "set out.normalize.phone_region, e.g. TR" in message

    # With the region the user knows, every user goes.
    regional = run_insider(table, skip_invalid_records=True, normalize={"phone_region": "TR"})
    assert regional.code == 0, regional.err
    assert regional.rows == {"read": ROWS, "accepted": ROWS, "rejected": 0, "unsent": 0}
    assert regional.summary["details"]["normalized"] == {
        "phone_number": 3_334,
        "country": 1_667,
        "language": 334,
    }
    sent = {p["identifiers"]["uuid"]: p for p in sandbox.profiles()}
    assert sent["u0"]["identifiers"]["phone_number"] == "+905320000000"
    assert sent["u1"]["attributes"]["country"] == "DE"
    assert sent["u2"]["attributes"]["language"] == "en"


CRM = (
    "Email,First Name,birth_date,created_at,Phone,Country,Email Optin,Language\n"
    " Ada@Example.COM ,Ada,1990-05-01,2024-01-02 10:11:12,0532 123 45 67,Turkey,yes,en-US\n"
    "grace@example.com,Grace,1985-12-09,2024-01-03 11:00:00,+1 (555) 123-4567,TUR,no,EN\n"
    "linus@example.com,Linus,1969-12-28,2024-01-04 12:00:00,0090 532 123 45 68,türkiye,Y,en\n"
    "ada2@example.com,Ada,1991-05-01,2024-01-05 13:00:00,05321234569,Germany,N,de-de\n"
    "b@example.com,Bo,1992-05-01,2024-01-06 14:00:00,0532 123 45 70,United States,1,en_us\n"
    "c@example.com,Cy,1993-05-01,2024-01-07 15:00:00,0532 123 45 71,DEU,0,tr\n"
    "d@example.com,Di,1994-05-01,2024-01-08 16:00:00,0532 123 45 72,de,TRUE,TR\n"
    "e@example.com,Ed,1995-05-01,2024-01-09 17:00:00,0532 123 45 73,Türkiye,False,en-GB\n"
)


def crm_job(tmp_path: Path, url: str, normalize: object) -> Path:
    (tmp_path / "crm.csv").write_text(CRM, encoding="utf-8")
    config = {
        "in": {"type": "file", "path": "crm.csv", "csv": {"strings_only": True}},
        "filters": [
            {
                "type": "rename",
                "case": "snake",
                "columns": {
                    "first_name": "name",
                    "birth_date": "birthday",
                    "phone": "phone_number",
                },
            }
        ],
        "out": {
            "type": "insider",
            "api_key": API_KEY,
            "partner_name": PARTNER,
            "endpoint": url,
            "skip_invalid_records": True,
            "reject_file": "rejects.jsonl",
            "normalize": normalize,
        },
    }
    job = tmp_path / "crm.yml"
    job.write_text(yaml.safe_dump(config), encoding="utf-8")
    return job


def test_a_crm_csv_is_sent_whole_with_the_documented_opt_ins(cli, sandbox, tmp_path) -> None:
    # Strict (the Treasure Data connector's behaviour): yes/no texts are no booleans.
    job = crm_job(tmp_path, sandbox.url, False)
    result = cli("validate", job)
    assert result.code == 2
    assert "email_optin (a default attribute) must be a boolean" in result.err

    # Defaults: what is unambiguous is fixed; national phones and names remain, explained.
    job = crm_job(tmp_path, sandbox.url, True)
    result = cli("validate", job, "--rejects", tmp_path / "invalid.jsonl")
    assert result.code == 1  # every record is still invalid: nothing would be sent
    assert "records: 8 checked, 8 invalid" in result.out
    # One pass shows everything left to fix, rule by rule, with the settings that would help.
    table = {line.split()[0]: line for line in result.out.splitlines() if ": pattern" in line}
    assert table["country:"].split()[2] == "7" and table["phone_number:"].split()[2] == "6"
    assert "values normalized: birthday 8, email_optin 8, language 6" in result.out
    lines = [json.loads(x) for x in (tmp_path / "invalid.jsonl").read_text().splitlines()]
    first = lines[0]  # Ada: a national phone AND a country name, both listed at once
    assert {(f["column"], f["rule"]) for f in first["failures"]} == {
        ("phone_number", "pattern"),
        ("country", "pattern"),
    }
    assert any("out.normalize.country_names: true" in f["message"] for f in first["failures"])

    # The opt-ins that need the user's knowledge: all 8 go.
    job = crm_job(tmp_path, sandbox.url, {"phone_region": "TR", "country_names": True})
    run = cli("run", job, "--no-progress")
    assert run.code == 0, run.err
    assert "accepted                  8" in run.out
    sent = {p["identifiers"]["email"]: p for p in sandbox.profiles()}
    ada = sent["ada@example.com"]
    assert ada["identifiers"]["phone_number"] == "+905321234567"
    assert ada["attributes"]["country"] == "TR"
    assert ada["attributes"]["birthday"] == "1990-05-01T00:00:00Z"
    assert ada["attributes"]["email_optin"] is True
    assert ada["attributes"]["language"] == "en_US"
    assert (
        ada["attributes"]["custom"]["created_at"] == "2024-01-02 10:11:12"
    )  # custom: sent as written
    grace = sent["grace@example.com"]
    assert grace["identifiers"]["phone_number"] == "+15551234567"
    assert grace["attributes"]["country"] == "TR"
    assert grace["attributes"]["email_optin"] is False
    assert grace["attributes"]["language"] == "en"
    assert sent["linus@example.com"]["identifiers"]["phone_number"] == "+905321234568"
    assert sent["linus@example.com"]["attributes"]["country"] == "TR"
    assert sent["ada2@example.com"]["attributes"]["country"] == "DE"
    assert sent["ada2@example.com"]["attributes"]["language"] == "de_DE"
    assert sent["b@example.com"]["attributes"]["country"] == "US"
    assert sent["c@example.com"]["attributes"]["country"] == "DE"
    assert sent["d@example.com"]["attributes"]["email_optin"] is True
    assert sent["e@example.com"]["attributes"]["language"] == "en_GB"
    assert "normalized" in run.out and "phone_number=8" in run.out


def test_validate_shows_changes_and_the_exact_request_bodies(cli, sandbox, tmp_path) -> None:
    job = crm_job(tmp_path, sandbox.url, {"phone_region": "TR", "country_names": True})
    result = cli("validate", job, "--show-changes", "2", "--show-requests", "1")
    assert result.code == 0, result.err
    assert 'country: "Turkey" -> "TR"' in result.out
    assert 'phone_number: "0532 123 45 67" -> "+905321234567"' in result.out
    assert 'email_optin: "yes" -> true' in result.out
    body = json.loads(result.out.split("as they would be sent:\n", 1)[1].splitlines()[0])
    assert len(body["users"]) == 8
    assert body["users"][0]["identifiers"]["email"] == "ada@example.com"
    assert body["users"][0]["identifiers"]["phone_number"] == "+905321234567"
    assert sandbox.requests == []  # a dry run sends nothing


def recent(hours: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=hours)


def test_text_timestamps_are_sent_in_utc(run_insider, sandbox) -> None:
    # Each time taken once: a second call may fall in the next second (it did, in CI).
    naive, utc = recent(5), recent(6)
    zoned = utc.astimezone(dt.timezone(dt.timedelta(hours=3)))
    table = pa.table(
        {
            "uuid": ["u1", "u2", "u3"],
            "event_name": ["page_view"] * 3,
            "timestamp": [
                naive.strftime("%Y-%m-%d %H:%M:%S"),  # Presto/Hive/CSV text of a timestamp
                zoned.isoformat().replace("+03:00", ".5+03:00"),
                "yesterday",
            ],
            "currency": ["try", "usd", "eur"],
        }
    )
    run = run_insider(table, export_mode="USER_EVENTS", skip_invalid_records=True)
    assert run.code == 0, run.err
    events = [u["events"][0] for b in bodies(sandbox) for u in b["users"]]
    assert events[0]["timestamp"] == naive.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert events[1]["timestamp"] == utc.strftime("%Y-%m-%dT%H:%M:%S") + ".5Z"
    assert events[0]["event_params"]["currency"] == "TRY"
    assert run.rows["rejected"] == 1
    assert "ISO 8601 texts" in run.rejects[0]["message"]


def test_drop_value_sends_the_user_without_the_bad_attribute(run_insider, sandbox) -> None:
    table = pa.table(
        {
            "uuid": ["u1", "u2", "u3", "undefined"],
            "name": ["Ada", None, "Cy", "Di"],
            "country": ["Atlantis", "Atlantis", "TR", "TR"],
            "age": [30, 31, -5, 40],
        }
    )
    run = run_insider(table, skip_invalid_records=True, on_invalid_value="drop_value")
    assert run.code == 0, run.err
    # u1 loses its country, u3 its age; u2 keeps only age; the placeholder uuid is refused.
    assert run.rows == {"read": 4, "accepted": 3, "rejected": 1, "unsent": 0}
    sent = {p["identifiers"]["uuid"]: p["attributes"] for p in sandbox.profiles()}
    assert sent["u1"] == {"name": "Ada", "age": 30}
    assert sent["u2"] == {"age": 31}
    assert sent["u3"] == {"name": "Cy", "country": "TR"}
    values = [r for r in run.rejects if r["stage"] == "value"]
    assert sorted((r["row"], r["column"]) for r in values) == [
        (0, "country"),
        (1, "country"),
        (2, "age"),
    ]
    assert run.summary["details"]["dropped_values"] == {"country": 2, "age": 1}
    refused = [r for r in run.rejects if r["stage"] == "validation"]
    assert [(r["row"], r["rule"]) for r in refused] == [(3, "not")]


def test_drop_value_never_sends_an_empty_user(run_insider, sandbox) -> None:
    table = pa.table({"uuid": ["u1"], "country": ["Atlantis"]})
    run = run_insider(table, skip_invalid_records=True, on_invalid_value="drop_value")
    assert run.rows["rejected"] == 1 and sandbox.profiles() == []
    line = run.rejects[0]
    assert line["rule"] == "empty"  # why it was refused once the value was dropped ...
    assert [f["column"] for f in line["failures"]] == [None, "country"]  # ... and what it lost


def test_unreadable_yes_no_is_a_record_error_naming_the_value(run_insider) -> None:
    table = pa.table({"uuid": ["u1", "u2"], "sms_optin": ["yes", "perhaps"]})
    run = run_insider(table, skip_invalid_records=True)
    assert run.rows["rejected"] == 1
    assert run.rejects[0]["rule"] == "boolean"
    assert "'perhaps' is not a yes/no value" in run.rejects[0]["message"]


def test_validate_exit_codes(cli, sandbox, tmp_path) -> None:
    data = tmp_path / "u.arrow"
    table = pa.table({"uuid": ["u1", "u2"], "name": ["a", "b"], "country": ["TR", "Atlantis"]})
    feather.write_feather(table, data)

    def validate(**out: object) -> int:
        config = {
            "in": {"type": "file", "path": data.name},
            "out": {
                "type": "insider",
                "api_key": API_KEY,
                "partner_name": PARTNER,
                "endpoint": sandbox.url,
                **out,
            },
        }
        job = tmp_path / "job.yml"
        job.write_text(yaml.safe_dump(config), encoding="utf-8")
        return cli("validate", job).code

    assert validate() == 1  # skip_invalid_records: false stops the job at Atlantis
    assert validate(skip_invalid_records=True) == 0  # the valid one would be sent
    assert validate(on_invalid_value="drop_value") == 0  # sent without the country


# --- the normalizer alone ---------------------------------------------------------------


def normalize(column: str, values: list[str | None], **settings: object) -> list[object]:
    spec = load_spec()
    schema = spec.attribute_schema(column)
    table = pa.table({column: pa.array(values, pa.string())})
    normalizer = Normalizer(table.schema, {column: rule_of(schema)}, Settings.of(settings or True))
    return normalizer.apply(table.to_batches()[0]).batch.column(0).to_pylist()


@pytest.mark.parametrize(
    ("column", "before", "after"),
    [
        (
            "language",
            ["EN", "en-us", "en_US", "zh-hant", "English", None],
            ["en", "en_US", "en_US", "zh_Hant", "English", None],
        ),
        ("country", [" de ", "TR", "Turkey", "tr "], ["DE", "TR", "Turkey", "TR"]),
        ("email", [" Ada@Example.COM", "x@y.z"], ["ada@example.com", "x@y.z"]),
        (
            "phone_number",
            ["+90 532 123 45 67", "0090 532 123 45 67", "0532 123 45 67", "+1"],
            ["+905321234567", "+905321234567", "0532 123 45 67", "+1"],
        ),
        (
            "birthday",
            ["1990-05-01", "1990-05-01T00:00:00Z", "1990-05-01T02:00:00+02:00", "01/05/1990"],
            ["1990-05-01T00:00:00Z", "1990-05-01T00:00:00Z", "1990-05-01T00:00:00Z", "01/05/1990"],
        ),
    ],
)
def test_default_rules(column, before, after) -> None:
    assert normalize(column, before) == after


def test_opt_ins() -> None:
    assert normalize("phone_number", ["0532 123 45 67"], phone_region="TR") == ["+905321234567"]
    assert normalize(
        "country", ["Turkey", "TUR", "United Kingdom", "Atlantis"], country_names=True
    ) == [
        "TR",
        "TR",
        "GB",
        "Atlantis",
    ]


def test_normalize_false_changes_nothing_and_rules_come_from_the_schemas() -> None:
    spec = load_spec()
    assert rule_of(spec.identifier_schema("email")) is Rule.EMAIL
    assert rule_of(spec.attribute_schema("gdpr_optin")) is Rule.BOOLEAN
    assert rule_of(spec.attribute_schema("some_custom")) is None  # custom: texts are texts
    assert rule_of(spec.event_param_schema("currency")) is Rule.CURRENCY
    table = pa.table({"country": ["de"]})
    off = Normalizer(table.schema, {"country": Rule.COUNTRY}, Settings(enabled=False))
    assert off.apply(table.to_batches()[0]).batch.column(0).to_pylist() == ["de"]


def test_dictionary_columns_and_counts() -> None:
    values = pa.array(["de", "DE", "de", None]).dictionary_encode()
    table = pa.table({"country": values})
    normalizer = Normalizer(table.schema, {"country": Rule.COUNTRY}, Settings())
    result = normalizer.apply(table.to_batches()[0])
    assert result.batch.column(0).to_pylist() == ["DE", "DE", "DE", None]
    assert result.changes["country"].changed == 2
    assert result.changes["country"].examples == [("de", "DE")]


def test_an_unknown_phone_region_is_a_config_error(run_insider) -> None:
    run = run_insider(pa.table({"uuid": ["u"], "name": ["x"]}), normalize={"phone_region": "XX"})
    assert run.code == 2
    assert "out.normalize.phone_region: 'XX'" in run.err


def test_the_patterns_an_in_form_value_is_taken_to_match_are_the_specs_own() -> None:
    # Validation skips a pattern that normalization's form implies: each implied pattern
    # must be a schema's own text, and values in form must match it.
    import re

    from arrowbulk.plugins.insider.normalize import _IMPLIED, _IN_FORM

    schemas = Path(__file__).parent.parent / "schemas" / "insider"
    texts = "".join(p.read_text() for p in schemas.glob("*.json"))
    in_form = {
        Rule.LANGUAGE: ["en", "tr_TR", "zh_Hant", "fil"],
        Rule.DATETIME: ["2024-01-02T10:11:12Z", "0001-01-01T00:00:00.5Z"],
        Rule.PHONE: ["+905551112233"],
        Rule.COUNTRY: ["TR"],
        Rule.CURRENCY: ["USD"],
    }
    for rule, implied in _IMPLIED.items():
        for pattern in implied:
            assert json.dumps(pattern) in texts, (rule, pattern)
        for value in in_form[rule]:
            assert re.search(_IN_FORM[rule], value), (rule, value)
            assert all(re.search(pattern, value) for pattern in implied), (rule, value)


def test_a_value_left_out_of_form_is_still_matched_against_the_spec(run_insider) -> None:
    table = pa.table({"uuid": ["u1", "u2", "u3"], "language": ["en_US", "EN", "english please"]})
    run = run_insider(table, skip_invalid_records=True)
    assert run.rows == {"read": 3, "accepted": 2, "rejected": 1, "unsent": 0}
    assert run.summary["rejected_by_reason"] == {"language: pattern": 1}
