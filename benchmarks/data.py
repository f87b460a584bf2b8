"""Deterministic benchmark data, built column-wise (2M rows in seconds)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NAMES = ["Ada", "Grace", "Zeynep", "Émile", "Ayşe", "Jürgen", "Mei", "Olu", "Sven", "José"]
CITIES = ["Istanbul", "Berlin", "München", "東京", "São Paulo", "Zürich"]
TAGS = ["['sale']", "['sale', 'vip']", "[]", "['new', 'app', 'web']", "['a, b', 'c']"]
EVENTS = [
    "purchase",
    "product_detail_page_view",
    "coupon_used",
    "homepage_view",
    "item_added_to_cart",
]


def _pick(values: list, index: pa.Array) -> pa.Array:
    return pc.take(pa.array(values), pc.cast(index, pa.int64()))


def _text(prefix: str, ids: pa.Array, suffix: str = "") -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(ids, pa.string()), suffix, "")


def _lists(ids: np.ndarray, make: pa.Array, max_len: int) -> pa.Array:
    lengths = ids % (max_len + 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pc.take(make, pa.array(np.arange(offsets[-1]) % len(make)))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def users(rows: int) -> pa.Table:
    ids_np = np.arange(rows, dtype=np.int64)
    ids = pa.array(ids_np)

    def mod(n: int) -> pa.Array:
        return pa.array(ids_np % n)

    def null_every(values: pa.Array, n: int) -> pa.Array:
        return pc.if_else(pa.array(ids_np % n == 0), pa.scalar(None, values.type), values)

    base = np.datetime64("1960-01-01", "s")
    birthdays = (base + (ids_np * 7919 % 16000) * np.timedelta64(1, "D")).astype("datetime64[s]")
    return pa.table(
        {
            "uuid": _text("u-", ids),
            "email": null_every(_text("user", ids, "@example.com"), 10),
            "phone_number": null_every(
                _text("+90555", pa.array(1_000_000 + ids_np % 9_000_000)), 3
            ),
            "name": _pick(NAMES, mod(len(NAMES))),
            "surname": _pick(["Lovelace", "Hopper", "Yılmaz", "Müller", 'O\'Brien "Jr"'], mod(5)),
            "birthday": pa.array(birthdays, pa.timestamp("s")),
            "gender": null_every(_pick(["female", "male"], mod(2)), 7),
            "age": pa.array(18 + ids_np % 60),
            "country": _pick(["TR", "DE", "US", "JP", "BR", "CH"], mod(6)),
            "city": null_every(_pick(CITIES, mod(len(CITIES))), 11),
            "language": _pick(["tr_TR", "de_DE", "en_US", "ja_JP"], mod(4)),
            "email_optin": pa.array(ids_np % 2 == 0),
            "sms_optin": null_every(pa.array(ids_np % 3 == 0), 5),
            "static_segment_id": _lists(ids_np, pa.array(np.arange(1, 40, dtype=np.int64)), 3),
            "tier": null_every(_pick(["bronze", "silver", "gold"], mod(3)), 4),
            "tags": _pick(TAGS, mod(len(TAGS))),
            "interests": _lists(
                ids_np * 7, pa.array(["shoes", "books", "games", "travel", "ünicode"]), 3
            ),
            "lifetime_value": null_every(pa.array(np.round((ids_np % 50000) * 0.37, 2)), 5),
        }
    )


def wide_users(rows: int) -> pa.Table:
    """The shape issue 11 measured: each user with a 20-item number list and a 4-item string
    list beside a few attributes (lists dominate the bytes sent)."""
    ids_np = np.arange(rows, dtype=np.int64)
    ids = pa.array(ids_np)
    numbers = pa.array((np.arange(rows * 20) % 997).astype(np.float64) / 7.0)
    strings = pc.take(
        pa.array(["shoes", "books", "games", "travel", "ünicode"]),
        pa.array(np.arange(rows * 4) % 5),
    )
    return pa.table(
        {
            "uuid": _text("u-", ids),
            "email": _text("user", ids, "@example.com"),
            "name": _pick(NAMES, pa.array(ids_np % len(NAMES))),
            "country": _pick(["TR", "DE", "US"], pa.array(ids_np % 3)),
            "scores": pa.ListArray.from_arrays(
                pa.array(np.arange(0, rows * 20 + 1, 20, dtype=np.int32)), numbers
            ),
            "interests": pa.ListArray.from_arrays(
                pa.array(np.arange(0, rows * 4 + 1, 4, dtype=np.int32)), strings
            ),
        }
    )


def crm_users(rows: int) -> pa.Table:
    """The same users as a CRM export writes them: values that normalization must fix.

    Lowercase countries (1 in 3), hyphenated or uppercase languages (1 in 2), emails with
    capitals and spaces (1 in 5), phones written 0090 ... (1 in 7; each distinct, so each one
    costs a phonenumbers parse), birthdays as 'YYYY-MM-DD HH:MM:SS' texts, yes/no opt-ins.
    """
    table = users(rows)
    ids_np = np.arange(rows, dtype=np.int64)

    def every(n: int, changed: pa.Array, column: str) -> pa.Array:
        return pc.if_else(pa.array(ids_np % n == 0), changed, table[column].combine_chunks())

    country = table["country"].combine_chunks()
    language = table["language"].combine_chunks()
    email = table["email"].combine_chunks()
    phone = table["phone_number"].combine_chunks()
    phone_00 = pc.replace_substring_regex(phone, r"^\+90555", "0090 555 ")
    birthday_text = pc.strftime(table["birthday"].combine_chunks(), "%Y-%m-%d %H:%M:%S")
    optin = table["email_optin"].combine_chunks()
    return (
        table.set_column(
            table.schema.get_field_index("country"),
            "country",
            every(3, pc.utf8_lower(country), "country"),
        )
        .set_column(
            table.schema.get_field_index("language"),
            "language",
            every(2, pc.utf8_upper(pc.replace_substring(language, "_", "-")), "language"),
        )
        .set_column(
            table.schema.get_field_index("email"),
            "email",
            every(5, pc.binary_join_element_wise(" ", pc.utf8_upper(email), "", ""), "email"),
        )
        .set_column(
            table.schema.get_field_index("phone_number"),
            "phone_number",
            every(7, phone_00, "phone_number"),
        )
        .set_column(table.schema.get_field_index("birthday"), "birthday", birthday_text)
        .set_column(
            table.schema.get_field_index("email_optin"),
            "email_optin",
            pc.if_else(optin, "yes", "no"),
        )
    )


def events(rows: int) -> pa.Table:
    ids_np = np.arange(rows, dtype=np.int64)
    ids = pa.array(ids_np)
    now = np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0), "s")
    stamps = now - (ids_np % (30 * 86400)) * np.timedelta64(1, "s")
    return pa.table(
        {
            "uuid": _text("u-", pa.array(ids_np // 3)),
            "event_name": _pick(EVENTS, pa.array(ids_np % len(EVENTS))),
            "timestamp": pa.array(stamps, pa.timestamp("s", tz="UTC")),
            "event_group_id": _text("E-", ids),
            "currency": _pick(["USD", "EUR", "TRY"], pa.array(ids_np % 3)),
            "unit_sale_price": pa.array(np.round(1 + (ids_np % 1000) * 0.5, 2)),
            "quantity": pa.array(1 + ids_np % 4),
            "product_id": _text("P-", pa.array(ids_np % 5000)),
            "taxonomy": _pick(["['shoes', 'men']", "['books']", "[]"], pa.array(ids_np % 3)),
            "coupon": pc.if_else(
                pa.array(ids_np % 4 == 0), _text("C-", ids), pa.scalar(None, pa.string())
            ),
        }
    )
