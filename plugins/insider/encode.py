"""Insider's JSON bodies, built column-wise from prepared values.

Each column's values already carry their JSON text (:mod:`prepare`). Here each becomes a
*fragment* ``,"key":value`` (null where the value is left out); an object is
``{`` + its fragments joined, nulls as empty, first comma cut + ``}``. Nested objects
(``custom``, ``partial``, ...) are fragments too, null where they would be empty. All of it
runs as Arrow compute over whole columns of bytes: no per-row Python dict, and the output
parses to exactly what a plain encoder makes from the same record
(``tests/test_insider_encode.py`` holds the two side by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowbulk.plugins.insider.columns import ColumnPlan, Plan, Role
from arrowbulk.plugins.insider.config import Operation
from arrowbulk.plugins.insider.prepare import Prepared

_NULL = pa.scalar(None, pa.binary())


@dataclass(frozen=True)
class Fragments:
    """Members of one object, per row: ``,"a":1,"b":2`` (each null where absent)."""

    parts: list[pa.Array]
    present: pa.BooleanArray | None  # rows with at least one member (None: no parts at all)

    def joined(self, rows: int) -> pa.Array:
        """``,"a":1,"b":2`` per row: the parts joined, nulls as nothing; empty where none."""
        if not self.parts:
            return pa.array(np.full(rows, b""), pa.binary())
        if len(self.parts) == 1:
            return pc.fill_null(self.parts[0], b"")
        return pc.binary_join_element_wise(
            *self.parts, b"", null_handling="replace", null_replacement=b""
        )

    def members(self, rows: int) -> pa.Array:
        """``"a":1,"b":2``: the joined parts without their first comma."""
        # An explicit stop: pyarrow 26's binary_slice without one fails ("Negative buffer resize").
        return pc.binary_slice(self.joined(rows), 1, 2**31 - 1)

    def obj(self, rows: int) -> pa.Array:
        return _concat(b"{", self.members(rows), b"}")

    def nested(self, key: str, rows: int) -> Fragments:
        """This object as one fragment ``,"key":{...}`` of an outer object (null where empty)."""
        if self.present is None:
            return Fragments([], None)
        wrapped = _concat(f',"{key}":{{'.encode(), self.members(rows), b"}")
        return Fragments([pc.if_else(self.present, wrapped, _NULL)], self.present)

    def named_list(self, key: str, rows: int) -> Fragments:
        """``,"key":[...]`` from fragments that are list items (``,"a",``)."""
        if self.present is None:
            return Fragments([], None)
        wrapped = _concat(f',"{key}":['.encode(), self.members(rows), b"]")
        return Fragments([pc.if_else(self.present, wrapped, _NULL)], self.present)

    def __add__(self, other: Fragments) -> Fragments:
        if self.present is None:
            return other
        if other.present is None:
            return self
        return Fragments(self.parts + other.parts, pc.or_(self.present, other.present))


def encode_users(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    """One JSON text (binary) per row: the user object (or, for events, the event object)."""
    operation = plan.operation
    if operation is Operation.EVENTS:
        return _event_objects(plan, prepared, rows)
    identifiers = identifier_objects(plan, prepared, rows)
    if operation in {Operation.DELETE_IDENTIFIERS, Operation.DELETE_PII}:
        return _concat(b'{"identifiers":', identifiers, b"}")
    if operation in {Operation.DELETE_ATTRIBUTES, Operation.AUDIENCE_REMOVE}:
        # The deletions follow the identifiers, so their first comma stays.
        return _concat(
            b'{"identifiers":',
            identifiers,
            _delete_members(plan, prepared, rows).joined(rows),
            b"}",
        )
    tail = b',"not_append":true}' if operation.not_append else b"}"
    return _concat(
        b'{"identifiers":',
        identifiers,
        b',"attributes":',
        _attribute_object(plan, prepared, rows),
        tail,
    )


def identifier_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    default = [c for c in plan.identifiers if c.role is Role.IDENTIFIER]
    custom = [c for c in plan.identifiers if c.role is Role.CUSTOM_IDENTIFIER]
    return (_values(default, prepared) + _values(custom, prepared).nested("custom", rows)).obj(rows)


def _attribute_object(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    if plan.operation.is_audience:  # td_audience_* are custom array attributes
        return _values(plan.payload, prepared).nested("custom", rows).obj(rows)
    default = _values(plan.by_role(Role.ATTRIBUTE), prepared)
    custom = _values(plan.by_role(Role.CUSTOM_ATTRIBUTE), prepared).nested("custom", rows)
    return (default + custom).obj(rows)


def _event_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    params = _values(plan.by_role(Role.EVENT_PARAM), prepared)
    params += _values(plan.by_role(Role.CUSTOM_EVENT_PARAM), prepared).nested("custom", rows)
    name = _member("event_name", prepared["event_name"])
    head = Fragments([name, _member("timestamp", prepared["timestamp"])], pc.is_valid(name))
    return (head + params.nested("event_params", rows)).obj(rows)


def _delete_members(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> Fragments:
    """``,"whole":[...],"partial":{...},"custom":{"whole":[...],"partial":{...}}``, empty parts left out."""
    if plan.operation is Operation.AUDIENCE_REMOVE:
        return (
            _values(plan.payload, prepared, arrays_only=True)
            .nested("partial", rows)
            .nested("custom", rows)
        )
    default = plan.by_role(Role.ATTRIBUTE)
    custom = plan.by_role(Role.CUSTOM_ATTRIBUTE)
    top = _names(default, prepared, rows).named_list("whole", rows)
    top += _values(default, prepared, arrays_only=True).nested("partial", rows)
    inner = _names(custom, prepared, rows).named_list("whole", rows)
    inner += _values(custom, prepared, arrays_only=True).nested("partial", rows)
    return top + inner.nested("custom", rows)


def _names(columns: Sequence[ColumnPlan], prepared: Mapping[str, Prepared], rows: int) -> Fragments:
    """``,"a"`` list items: the columns whose row holds a single (non-array) value."""
    parts, present = [], None
    for column in columns:
        values = prepared[column.name]
        scalar = pc.and_(values.present(), pc.invert(_is_list(values, rows)))
        parts.append(pc.if_else(scalar, f',"{column.name}"'.encode(), _NULL))
        present = scalar if present is None else pc.or_(present, scalar)
    return Fragments(parts, present)


def _values(
    columns: Sequence[ColumnPlan], prepared: Mapping[str, Prepared], arrays_only: bool = False
) -> Fragments:
    """``,"a":1`` fragments of these columns (with arrays_only, array values only)."""
    parts, present = [], None
    for column in columns:
        values = prepared[column.name]
        text = values.json.cast(pa.binary())
        if arrays_only:
            text = pc.if_else(_is_list(values, len(text)), text, _NULL)
        parts.append(pc.binary_join_element_wise(f',"{column.name}":'.encode(), text, b""))
        valid = pc.is_valid(text)
        present = valid if present is None else pc.or_(present, valid)
    return Fragments(parts, present)


def _member(key: str, values: Prepared) -> pa.Array:
    return pc.binary_join_element_wise(f',"{key}":'.encode(), values.json.cast(pa.binary()), b"")


def _is_list(values: Prepared, rows: int) -> pa.BooleanArray:
    found = pa.array(np.zeros(rows, dtype=bool))
    for lists in (values.string_lists, values.number_lists):
        if lists is not None:
            found = pc.or_(found, pc.is_valid(lists))
    return found


def _concat(*pieces: bytes | pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*pieces, b"")
