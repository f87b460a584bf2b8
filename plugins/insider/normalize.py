"""Values as warehouses and CRMs write them, turned into the forms Insider's spec asks for.

Which columns are normalized, and how, is read from the spec's schemas: a property carries a
``normalize`` annotation (``email``, ``phone``, ``country``, ``currency``, ``language``,
``datetime``), and a property of type boolean takes yes/no texts. Only text columns are
touched (an Arrow timestamp, date or boolean is already exact).

Rules, in order of how much they assume:

- on by default, because the result is unambiguous: code case (``de`` -> ``DE``), emails
  trimmed and lowercased, phone numbers that carry their country code (``+1 (555) ...``,
  ``0090 ...``) to E.164, ISO 8601 date and date-time texts to RFC 3339 UTC (a text without
  an offset is taken as UTC, like a naive timestamp column), yes/no texts to booleans;
- opt-in, because they need the user's knowledge: ``phone_region`` reads national numbers as
  that region's; ``country_names`` maps names and alpha-3 codes to alpha-2.

Each column pays one vectorized test of "already in form"; only the distinct values that fail
it are worked on (in Python, with phonenumbers and pycountry), then taken back to the rows. A
value no rule can read is left as it was, for validation to reject with its fix. Every change
is counted per column, with examples (before -> after).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from arrowbulk import ConfigError, yes_no
from arrowbulk.plugins.insider.arrays import repeated
from arrowbulk.plugins.insider.timetext import RFC3339_FORMS, rfc3339

#: Examples of changes kept per column and batch (validate --show-changes shows them).
EXAMPLES_PER_COLUMN = 5


class Rule(enum.Enum):
    EMAIL = "email"
    PHONE = "phone"
    COUNTRY = "country"
    CURRENCY = "currency"
    LANGUAGE = "language"
    DATETIME = "datetime"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Settings:
    """``out.normalize``: ``true`` (the default), ``false``, or the opt-ins."""

    enabled: bool = True
    phone_region: str | None = None
    country_names: bool = False

    @classmethod
    def of(cls, value: bool | Mapping[str, Any]) -> Settings:
        if isinstance(value, bool):
            return cls(enabled=value)
        region = value.get("phone_region")
        if region is not None:
            _check_region(region)
        return cls(True, region, bool(value.get("country_names", False)))


def _check_region(region: str) -> None:
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"out.normalize.phone_region: {region!r} is not a region phonenumbers knows; use an "
            "ISO 3166-1 alpha-2 code in capitals, such as TR, DE or US"
        )


@dataclass
class ColumnChanges:
    """What normalization did to one column of one batch."""

    changed: int = 0
    examples: list[tuple[Any, Any]] = field(default_factory=list)
    #: Per row, why a value could not be read (only where the column's type changes: a text
    #: that is no yes/no cannot stay in a boolean column). Null where fine.
    errors: pa.StringArray | None = None
    #: Patterns every value of the column matches (it was all in form): validation need not
    #: match them again.
    forms: frozenset[str] = frozenset()


@dataclass
class Normalized:
    batch: pa.RecordBatch
    changes: dict[str, ColumnChanges]


def rule_of(schema: Mapping[str, Any] | bool) -> Rule | None:
    """The normalization a property's schema asks for, if any."""
    if not isinstance(schema, Mapping):
        return None  # a boolean schema (true: anything goes)
    if schema.get("type") == "boolean":
        return Rule.BOOLEAN
    named = schema.get("normalize")
    if isinstance(named, str):
        return Rule(named)
    # Only what every value must be (allOf): a custom attribute may be a boolean among other
    # kinds (anyOf), and its texts are texts.
    for sub in schema.get("allOf", []):
        found = rule_of(sub)
        if found is not None:
            return found
    return None


def _is_text(arrow_type: pa.DataType) -> bool:
    if pat.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return bool(pat.is_string(arrow_type) or pat.is_large_string(arrow_type))


class Normalizer:
    """Normalizes the text columns of batches of one schema; built once per job."""

    def __init__(
        self, schema: pa.Schema, rules: Mapping[str, Rule | None], settings: Settings
    ) -> None:
        self.settings = settings
        self.rules: dict[str, Rule] = {}
        if settings.enabled:
            self.rules = {
                name: rule
                for name, rule in rules.items()
                if rule is not None and _is_text(schema.field(name).type)
            }
        # Converters are built once (they load phonenumbers, pycountry), not per batch.
        self.converters = {
            rule: _CONVERTERS[rule](settings)
            for rule in set(self.rules.values())
            if rule in _CONVERTERS
        }
        self.schema = pa.schema(
            [
                field.with_type(pa.bool_()) if self.rules.get(field.name) is Rule.BOOLEAN else field
                for field in schema
            ]
        )

    def apply(self, batch: pa.RecordBatch) -> Normalized:
        if not self.rules:
            return Normalized(batch, {})
        columns = list(batch.columns)
        changes: dict[str, ColumnChanges] = {}
        for name, rule in self.rules.items():
            index = batch.schema.get_field_index(name)
            values = columns[index]
            if pat.is_dictionary(values.type):
                values = values.dictionary_decode()
            values = values.cast(pa.string())
            if rule is Rule.BOOLEAN:
                columns[index], changes[name] = _booleans(values)
            else:
                columns[index], changes[name] = _texts(values, rule, self.converters.get(rule))
        return Normalized(pa.RecordBatch.from_arrays(columns, schema=self.schema), changes)


# --- texts to texts ------------------------------------------------------------------------

#: What a value already in form looks like (an email: its trimmed, lowercased self).
_IN_FORM = {
    Rule.PHONE: r"^\+[1-9]\d{6,14}$",
    Rule.COUNTRY: r"^[A-Z]{2}$",
    Rule.CURRENCY: r"^[A-Z]{3}$",
    Rule.LANGUAGE: r"^[a-z]{2,3}(_([A-Z]{2}|[A-Z][a-z]{3}))?$",
    Rule.DATETIME: r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$",
}

#: Spec patterns an in-form value matches beyond its own form (each by inspection: the form
#: is the narrower; ``tests/test_insider_normalize.py`` holds them to the schemas' texts).
_IMPLIED: dict[Rule, frozenset[str]] = {
    Rule.LANGUAGE: frozenset({r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$"}),
    Rule.DATETIME: RFC3339_FORMS,
    Rule.PHONE: frozenset(),
    Rule.COUNTRY: frozenset(),
    Rule.CURRENCY: frozenset(),
}


def _matches(values: pa.StringArray, pattern: str) -> pa.BooleanArray:
    """``match_substring_regex``; once per distinct value when they repeat (country,
    language and currency codes; 2M rows: 0.06 s -> 0.02 s)."""
    encoded = repeated(values)
    if encoded is None:
        return pc.match_substring_regex(values, pattern)
    return pc.take(pc.match_substring_regex(encoded.dictionary, pattern), encoded.indices)


def _texts(
    values: pa.StringArray, rule: Rule, convert: Callable[[str], str | None] | None
) -> tuple[pa.Array, ColumnChanges]:
    if rule is Rule.EMAIL:
        fixed = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        return _counted(values, fixed)
    assert convert is not None
    pattern = _IN_FORM[rule]
    out_of_form = pc.fill_null(pc.invert(_matches(values, pattern)), False)
    if not pc.any(out_of_form).as_py():
        # The usual case for clean data: one regex pass, which the pattern rule reuses.
        return values, ColumnChanges(forms=_IMPLIED[rule] | {pattern})
    if rule is Rule.DATETIME:
        fixed = _datetimes_vectorized(values, out_of_form)
        if fixed is not None:
            return _counted(values, fixed)
    # Each distinct out-of-form value is worked on once, then taken back to its rows.
    encoded = pc.dictionary_encode(pc.if_else(out_of_form, values, pa.scalar(None, pa.string())))
    uniques: list[str] = encoded.dictionary.to_pylist()
    fixed_uniques = pa.array([convert(u) for u in uniques], pa.string())
    fixed = pc.coalesce(pc.take(fixed_uniques, encoded.indices), values)
    return _counted(values, fixed)


def _counted(before: pa.StringArray, after: pa.StringArray) -> tuple[pa.Array, ColumnChanges]:
    changed = pc.fill_null(pc.not_equal(before, after), False)
    count = pc.sum(changed).as_py() or 0
    if not count:
        return before, ColumnChanges()
    return after, ColumnChanges(count, _examples(before, after, changed))


def _examples(before: pa.Array, after: pa.Array, changed: pa.BooleanArray) -> list[tuple[Any, Any]]:
    rows = pc.indices_nonzero(changed)
    # Distinct examples: the first rows of distinct before-values.
    seen: dict[Any, Any] = {}
    for row in rows.to_numpy()[: EXAMPLES_PER_COLUMN * 20].tolist():
        value = before[row].as_py()
        if value not in seen:
            seen[value] = after[row].as_py()
            if len(seen) == EXAMPLES_PER_COLUMN:
                break
    return list(seen.items())


def _code(length: int, names: bool) -> Callable[[Settings], Callable[[str], str | None]]:
    def make(settings: Settings) -> Callable[[str], str | None]:
        by_name = names and settings.country_names

        def convert(text: str) -> str | None:
            trimmed = text.strip()
            if len(trimmed) == length and trimmed.isascii() and trimmed.isalpha():
                return trimmed.upper()
            if by_name:
                return country_index().get(_fold(trimmed))
            return None

        return convert

    return make


def _language(settings: Settings) -> Callable[[str], str | None]:
    def convert(text: str) -> str | None:
        match = _LANGUAGE.match(text)
        if match is None:
            return None
        language, region = match.group(1).lower(), match.group(2)
        if region is None:
            return language
        return f"{language}_{region.upper() if len(region) == 2 else region.title()}"

    return convert


_LANGUAGE = re.compile(r"^\s*([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}|[A-Za-z]{4}))?\s*$")


def _phone(settings: Settings) -> Callable[[str], str | None]:
    import phonenumbers

    def convert(text: str) -> str | None:
        candidate = text.strip()
        if candidate.startswith("00"):
            candidate = "+" + candidate[2:]  # the international call prefix most countries use
        region = None if candidate.startswith("+") else settings.phone_region
        if region is None and not candidate.startswith("+"):
            return None  # a national number: its country is not ours to guess
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(number):
            return None
        e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return e164

    return convert


def _datetime(settings: Settings) -> Callable[[str], str | None]:
    def convert(text: str) -> str | None:
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)  # as a naive timestamp column is read
        moment = moment.astimezone(dt.UTC)
        fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"

    return convert


def _datetimes_vectorized(values: pa.StringArray, out_of_form: pa.BooleanArray) -> pa.Array | None:
    """ISO 8601 texts parsed by Arrow, when the out-of-form values all share one kind: all
    without an offset (taken as UTC) or all with one. None for a mix, or anything Arrow cannot
    read: those go value by value."""
    texts = pc.utf8_trim_whitespace(pc.if_else(out_of_form, values, pa.scalar(None, pa.string())))
    for kind in (pa.timestamp("ns"), pa.timestamp("ns", "UTC")):
        try:
            parsed = texts.cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return pc.coalesce(rfc3339(parsed), values)
    return None


_CONVERTERS: dict[Rule, Callable[[Settings], Callable[[str], str | None]]] = {
    Rule.PHONE: _phone,
    Rule.COUNTRY: _code(2, names=True),
    Rule.CURRENCY: _code(3, names=False),
    Rule.LANGUAGE: _language,
    Rule.DATETIME: _datetime,
}


# --- texts to booleans ---------------------------------------------------------------------


def _booleans(values: pa.StringArray) -> tuple[pa.Array, ColumnChanges]:
    booleans, unreadable = yes_no(values)
    errors = None
    if pc.any(unreadable).as_py():
        message = pc.binary_join_element_wise(
            "'",
            values,
            "' is not a yes/no value; write true/false, yes/no, y/n or 1/0 (any case)",
            "",
        )
        errors = pc.if_else(unreadable, message, pa.scalar(None, pa.string()))
    changed = pc.is_valid(booleans)
    count = pc.sum(changed).as_py() or 0
    examples = _examples(values, booleans, changed) if count else []
    return booleans, ColumnChanges(count, examples, errors)


# --- country names -------------------------------------------------------------------------

#: Names people still write that ISO 3166 renamed or never listed. pycountry knows the
#: current names, official names, common names and alpha-3 codes; these are the rest.
_FORMER_NAMES = {
    "turkey": "TR",
    "turkiye": "TR",
    "russia": "RU",
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "holland": "NL",
    "ivory coast": "CI",
    "macedonia": "MK",
    "burma": "MM",
    "swaziland": "SZ",
    "cape verde": "CV",
    "brunei": "BN",
    "palestine": "PS",
    "vatican": "VA",
    "east timor": "TL",
    "south korea": "KR",
    "north korea": "KP",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
}


def _fold(text: str) -> str:
    """Lowercase, accents removed, spaces collapsed: Türkiye and turkiye are one key."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


@cache
def country_index() -> Mapping[str, str]:
    """Folded country names and alpha-3 codes -> alpha-2 (built once, from pycountry)."""
    import pycountry

    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attribute in ("alpha_3", "name", "official_name", "common_name"):
            value = getattr(country, attribute, None)
            if value:
                index[_fold(value)] = country.alpha_2
    index.update(_FORMER_NAMES)
    return index
