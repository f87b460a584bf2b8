"""Regenerate examples/users.parquet: a deterministic sample shaped like an Insider export.

Run from the repo root: python examples/make_users.py
It holds users with default and custom attributes, arrays both as Arrow lists and as strings
written ['a', 'b'], nulls, unicode, and a few rows that break Insider's data spec on purpose.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 200
FIRST = ["Ada", "Grace", "Linus", "Zeynep", "Émile", "Ayşe", "Jürgen", "Mei", "Olu", "Sven"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Yılmaz", "Zola", "Kaya", "Müller", "Wang", "Ade", "Berg"]
COUNTRIES = ["TR", "US", "DE", "GB", "FR", "JP", None]
TIERS = ["bronze", "silver", "gold", None]
TAGS = ["sale", "new", "vip", "app", "web"]


def build(rows: int = ROWS, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    columns: dict[str, list[object]] = {
        name: []
        for name in [
            "uuid",
            "email",
            "phone_number",
            "name",
            "surname",
            "birthday",
            "gender",
            "age",
            "country",
            "city",
            "language",
            "email_optin",
            "sms_optin",
            "static_segment_id",
            "tier",
            "tags",
            "interests",
            "lifetime_value",
            "signup_at",
        ]
    }
    for i in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        columns["uuid"].append(f"u-{i:05d}")
        columns["email"].append(f"{first.lower()}.{i}@example.com" if rng.random() > 0.1 else None)
        columns["phone_number"].append(
            f"+90555{rng.randrange(10**6, 10**7)}" if rng.random() > 0.3 else None
        )
        columns["name"].append(first)
        columns["surname"].append(last)
        columns["birthday"].append(
            dt.datetime(1960 + rng.randrange(45), rng.randrange(1, 13), rng.randrange(1, 29))
        )
        columns["gender"].append(rng.choice(["female", "male", None]))
        columns["age"].append(rng.randrange(18, 80))
        columns["country"].append(rng.choice(COUNTRIES))
        columns["city"].append(rng.choice(["Istanbul", "Berlin", "München", "東京", None]))
        columns["language"].append(rng.choice(["tr_TR", "en_US", "de_DE", None]))
        columns["email_optin"].append(rng.random() > 0.5)
        columns["sms_optin"].append(rng.choice([True, False, None]))
        columns["static_segment_id"].append(rng.sample(range(1, 20), rng.randrange(0, 3)))
        columns["tier"].append(rng.choice(TIERS))
        picked = rng.sample(TAGS, rng.randrange(0, 3))
        columns["tags"].append("[" + ", ".join(f"'{t}'" for t in picked) + "]")
        columns["interests"].append(
            rng.sample(["shoes", "books", "games", "travel"], rng.randrange(0, 3)) or None
        )
        columns["lifetime_value"].append(
            round(rng.uniform(0, 5000), 2) if rng.random() > 0.2 else None
        )
        columns["signup_at"].append(
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=rng.randrange(10**6))
        )
    # Rows that break the spec, so a run shows what rejection looks like.
    columns["email"][3] = "not-an-email"
    columns["phone_number"][5] = "12345"
    columns["tags"][8] = "['sale', 1]"
    columns["country"][13] = "Turkey"
    schema = pa.schema(
        [
            ("uuid", pa.string()),
            ("email", pa.string()),
            ("phone_number", pa.string()),
            ("name", pa.string()),
            ("surname", pa.string()),
            ("birthday", pa.timestamp("s")),
            ("gender", pa.string()),
            ("age", pa.int64()),
            ("country", pa.string()),
            ("city", pa.string()),
            ("language", pa.string()),
            ("email_optin", pa.bool_()),
            ("sms_optin", pa.bool_()),
            ("static_segment_id", pa.list_(pa.int64())),
            ("tier", pa.string()),
            ("tags", pa.string()),
            ("interests", pa.list_(pa.string())),
            ("lifetime_value", pa.float64()),
            ("signup_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.Table.from_pydict(columns, schema=schema)


if __name__ == "__main__":
    target = Path(__file__).with_name("users.parquet")
    pq.write_table(build(), target, row_group_size=64)
    print(f"wrote {target}")
