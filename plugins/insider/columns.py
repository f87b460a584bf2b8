"""Schema-level checks and the column plan: what each input column becomes in Insider's body.

Runs before any request. Each failure is one :class:`SchemaError` naming the columns.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from arrowbulk import SchemaError
from arrowbulk.plugins.insider.config import InsiderTask
from arrowbulk.plugins.insider.operations import Operation, Takes
from arrowbulk.plugins.insider.spec import (
    AUDIENCE_COLUMNS,
    COLUMN_NAME_PATTERN,
    IDENTIFIER_NAMES,
    MAX_CUSTOM_ATTRIBUTES,
    Spec,
)


class Role(enum.Enum):
    IDENTIFIER = "identifier"
    CUSTOM_IDENTIFIER = "custom identifier"
    ATTRIBUTE = "default attribute"
    CUSTOM_ATTRIBUTE = "custom attribute"
    EVENT_NAME = "event name"
    TIMESTAMP = "event timestamp"
    EVENT_PARAM = "default event parameter"
    CUSTOM_EVENT_PARAM = "custom event parameter"

    @property
    def is_identifier(self) -> bool:
        return self in {Role.IDENTIFIER, Role.CUSTOM_IDENTIFIER}

    @property
    def is_custom(self) -> bool:
        return self in {Role.CUSTOM_IDENTIFIER, Role.CUSTOM_ATTRIBUTE, Role.CUSTOM_EVENT_PARAM}


class Kind(enum.Enum):
    """The JSON shape an Arrow column is sent as."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"  # sent as an RFC 3339 string in UTC
    LIST = "list"  # an Arrow list of strings or numbers
    TEXT_OR_ARRAY = "text or array"  # strings; those written ['a', 'b'] / [1, 2] are arrays


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    role: Role
    kind: Kind
    schema: Mapping[str, Any]  # the JSON Schema its values must match

    @property
    def wants_array(self) -> bool:
        return self.kind in {Kind.LIST, Kind.TEXT_OR_ARRAY}


@dataclass(frozen=True)
class Plan:
    operation: Operation
    columns: tuple[ColumnPlan, ...]

    def by_role(self, *roles: Role) -> list[ColumnPlan]:
        return [c for c in self.columns if c.role in roles]

    @property
    def identifiers(self) -> list[ColumnPlan]:
        return [c for c in self.columns if c.role.is_identifier]

    @property
    def payload(self) -> list[ColumnPlan]:
        return [c for c in self.columns if not c.role.is_identifier]


def plan_columns(schema: pa.Schema, task: InsiderTask, spec: Spec) -> Plan:
    """Check the input's columns against the operation and map each to its role."""
    names = schema.names
    bad_names = [n for n in names if not re.match(COLUMN_NAME_PATTERN, n)]
    if bad_names:
        raise SchemaError(
            f"column names must match {COLUMN_NAME_PATTERN} (lowercase, digits, underscores): "
            f'{", ".join(map(repr, bad_names))}; rename them in the query (e.g. SELECT "Email" AS email)'
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"duplicate columns: {', '.join(duplicates)}")
    forbidden = [f"{f.name} ({f.type})" for f in schema if _forbidden_type(f.type)]
    if forbidden:
        raise SchemaError(
            "Insider accepts no JSON objects, arrays of objects, arrays of booleans, nested or "
            f"mixed arrays; these columns have such types: {', '.join(forbidden)}; select the "
            "fields you need as columns (for json: SELECT extra->>'plan' AS plan)"
        )
    missing_custom = [c for c in task.custom_identifiers if c not in names]
    if missing_custom:
        raise SchemaError(
            f"custom_identifier_fields names {', '.join(missing_custom)}, but the input has no such "
            f"column (columns: {', '.join(names)})"
        )
    identifier_names = [n for n in names if n in IDENTIFIER_NAMES or n in task.custom_identifiers]
    if not identifier_names:
        raise SchemaError(
            "no identifier column: add email, phone_number or uuid, or name a custom identifier "
            "column in custom_identifier_fields"
        )
    columns = tuple(_plan_one(schema.field(n), task, spec) for n in names)
    plan = Plan(task.operation, columns)
    _check_operation(plan, schema)
    return plan


def _plan_one(field: pa.Field, task: InsiderTask, spec: Spec) -> ColumnPlan:
    role, schema = role_of(field.name, task, spec)
    kind = _kind(field.type)
    if not role.is_identifier and role not in {Role.EVENT_NAME, Role.TIMESTAMP}:
        kind = _array_aware(kind, role, schema)
    return ColumnPlan(field.name, role, kind, schema)


def role_of(name: str, task: InsiderTask, spec: Spec) -> tuple[Role, Mapping[str, Any]]:
    """What a column is for this operation, and the JSON Schema its values must match."""
    takes = task.operation.spec.takes
    if name in task.custom_identifiers:
        return Role.CUSTOM_IDENTIFIER, spec.identifier_schema(name)
    if name in IDENTIFIER_NAMES:
        return Role.IDENTIFIER, spec.identifier_schema(name)
    if takes is Takes.EVENTS:
        if name in ("event_name", "timestamp"):
            return (
                Role.EVENT_NAME if name == "event_name" else Role.TIMESTAMP
            ), spec.event_field_schema(name)
        role = Role.EVENT_PARAM if spec.is_default_event_param(name) else Role.CUSTOM_EVENT_PARAM
        return role, spec.event_param_schema(name)
    if takes is Takes.AUDIENCE:
        return Role.CUSTOM_ATTRIBUTE, spec.audience_schema(name)
    role = Role.ATTRIBUTE if spec.is_default_attribute(name) else Role.CUSTOM_ATTRIBUTE
    return role, spec.attribute_schema(name)


def _array_aware(kind: Kind, role: Role, schema: Mapping[str, Any]) -> Kind:
    """String columns carry arrays written ['a', 'b'] where an array may stand."""
    if kind is not Kind.STRING:
        return kind
    return Kind.TEXT_OR_ARRAY if role.is_custom or _allows_array(schema) else kind


def _allows_array(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_allows_array(s) for key in ("allOf", "anyOf", "oneOf") for s in schema.get(key, []))


def _check_operation(plan: Plan, schema: pa.Schema) -> None:
    """The columns the operation takes (its row in the operations table says which)."""
    takes = plan.operation.spec.takes
    _TAKES_CHECKS[takes](plan, schema)
    if takes in {Takes.ATTRIBUTES, Takes.ARRAYS, Takes.MARKERS}:
        custom = [c.name for c in plan.payload if c.role is Role.CUSTOM_ATTRIBUTE]
        if len(custom) > MAX_CUSTOM_ATTRIBUTES:
            raise SchemaError(
                f"{len(custom)} custom attributes; Insider allows at most {MAX_CUSTOM_ATTRIBUTES} per tenant"
            )
    for column in plan.columns:
        arrow_type = schema.field(column.name).type
        if (
            takes is Takes.MARKERS
            and not column.role.is_identifier
            and not (pat.is_list(arrow_type) or pat.is_large_list(arrow_type))
        ):
            continue  # a scalar there only marks a whole deletion: its type does not matter
        _check_type_fits(column, arrow_type)


def _takes_events(plan: Plan, schema: pa.Schema) -> None:
    missing = [n for n in ("event_name", "timestamp") if n not in schema.names]
    if missing:
        raise SchemaError(
            f"USER_EVENTS needs the columns {', '.join(missing)} (one row is one event)"
        )
    timestamp = schema.field("timestamp").type
    if not (
        pat.is_timestamp(timestamp)
        or pat.is_date(timestamp)
        or pat.is_string(timestamp)
        or pat.is_large_string(timestamp)
    ):
        raise SchemaError(
            f"timestamp must be a timestamp, a date or an RFC 3339 string, not {timestamp}"
        )


def _takes_audience(plan: Plan, schema: pa.Schema) -> None:
    names = [c.name for c in plan.payload]
    extra = [n for n in names if n not in AUDIENCE_COLUMNS]
    if extra:
        raise SchemaError(
            "USER_AUDIENCES takes only identifiers, td_audience_id and td_audience_name; "
            f"remove {', '.join(extra)}"
        )
    missing = [n for n in AUDIENCE_COLUMNS if n not in names]
    if missing:
        raise SchemaError(
            f"USER_AUDIENCES needs both td_audience_id and td_audience_name (ids and names "
            f"pair up by position in every row); missing {', '.join(missing)}"
        )
    for column in plan.payload:
        if not column.wants_array:
            raise SchemaError(
                f"{column.name} must be an array (an Arrow list or a string like [1, 2]), not {schema.field(column.name).type}"
            )


def _takes_arrays(plan: Plan, schema: pa.Schema) -> None:
    scalar = [c.name for c in plan.payload if not c.wants_array]
    if scalar:
        raise SchemaError(
            f"{plan.operation.value.split('/')[-1]} replaces arrays only; these columns are not "
            f"arrays of strings or numbers: {', '.join(scalar)}"
        )
    if not plan.payload:
        raise SchemaError(
            f"{plan.operation.value.split('/')[-1]} needs at least one array column besides "
            "identifiers"
        )


def _takes_nothing(plan: Plan, schema: pa.Schema) -> None:
    if plan.payload:
        raise SchemaError(
            f"{plan.operation.value} takes identifier columns only; remove "
            f"{', '.join(c.name for c in plan.payload)} (or name them in custom_identifier_fields)"
        )


def _takes_attributes(plan: Plan, schema: pa.Schema) -> None:
    if not plan.payload:
        raise SchemaError(
            f"{plan.operation.value} needs at least one attribute column besides identifiers"
        )


_TAKES_CHECKS = {
    Takes.EVENTS: _takes_events,
    Takes.AUDIENCE: _takes_audience,
    Takes.ARRAYS: _takes_arrays,
    Takes.NOTHING: _takes_nothing,
    Takes.ATTRIBUTES: _takes_attributes,
    Takes.MARKERS: _takes_attributes,
}


def _check_type_fits(column: ColumnPlan, arrow_type: pa.DataType) -> None:
    """A column whose every value would break the spec is a schema error, not N record errors."""
    expected = _json_types(column.schema)
    if not expected:
        return
    sent_as = {
        Kind.STRING: {"string"},
        Kind.TIMESTAMP: {"string"},
        Kind.NUMBER: {"number"},
        Kind.INTEGER: {"number", "integer"},
        Kind.BOOLEAN: {"boolean"},
        Kind.LIST: {"array"},
        Kind.TEXT_OR_ARRAY: {"string", "array"},
    }[column.kind]
    if column.kind is Kind.NUMBER and "integer" in expected:
        return  # floats holding whole numbers are fine; each value is checked
    if not sent_as & expected:
        article = "an" if column.role.value[0] in "aeiou" else "a"
        raise SchemaError(
            f"{column.name} ({article} {column.role.value}) must be a {' or '.join(sorted(expected))}, "
            f"but the column is {arrow_type}; cast it in the query"
        )


def _json_types(schema: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(kind)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            found |= _json_types(sub)
    return found


def _kind(arrow_type: pa.DataType) -> Kind:
    if pat.is_dictionary(arrow_type):
        return _kind(arrow_type.value_type)
    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or _is_string_view(arrow_type):
        return Kind.STRING
    if pat.is_boolean(arrow_type):
        return Kind.BOOLEAN
    if pat.is_integer(arrow_type):
        return Kind.INTEGER
    if pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return Kind.NUMBER
    if pat.is_timestamp(arrow_type) or pat.is_date(arrow_type):
        return Kind.TIMESTAMP
    if (
        pat.is_list(arrow_type)
        or pat.is_large_list(arrow_type)
        or pat.is_fixed_size_list(arrow_type)
    ):
        return Kind.LIST
    if pat.is_null(arrow_type):
        return Kind.STRING  # every value is null and left out
    raise SchemaError(
        f"columns of type {arrow_type} cannot be sent to Insider; cast them in the query"
    )


def _is_string_view(arrow_type: pa.DataType) -> bool:
    return str(arrow_type) == "string_view"


def _forbidden_type(arrow_type: pa.DataType) -> bool:
    if isinstance(arrow_type, pa.BaseExtensionType) and arrow_type.extension_name == "arrow.json":
        return True  # JSON values (a database's json/jsonb): objects Insider does not take
    if pat.is_dictionary(arrow_type):
        return _forbidden_type(arrow_type.value_type)
    if pat.is_struct(arrow_type) or pat.is_map(arrow_type) or pat.is_union(arrow_type):
        return True
    if (
        pat.is_list(arrow_type)
        or pat.is_large_list(arrow_type)
        or pat.is_fixed_size_list(arrow_type)
    ):
        item = arrow_type.value_type
        if pat.is_dictionary(item):
            item = item.value_type
        return not (
            pat.is_string(item)
            or pat.is_large_string(item)
            or pat.is_integer(item)
            or pat.is_floating(item)
            or pat.is_decimal(item)
        )
    return bool(
        pat.is_binary(arrow_type)
        or pat.is_large_binary(arrow_type)
        or pat.is_time(arrow_type)
        or pat.is_duration(arrow_type)
    )
