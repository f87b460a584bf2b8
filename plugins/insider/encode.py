"""Insider's JSON bodies, built column-wise from prepared values.

Each column's values already carry their JSON text (:mod:`prepare`); here they become
``,"key":value`` members (empty where the value is left out), joined per row with Arrow
compute into objects. There is no per-row Python dict, and the output parses to exactly what
a plain encoder makes from the same record (``tests/test_insider_encode.py`` holds the two
side by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from arrowbulk.plugins.insider.columns import ColumnPlan, Plan, Role
from arrowbulk.plugins.insider.config import Operation
from arrowbulk.plugins.insider.prepare import Prepared


def encode_users(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.StringArray:
    """One JSON text per row: the user object (or, for events, the event object)."""
    operation = plan.operation
    if operation is Operation.EVENTS:
        return _event_objects(plan, prepared, rows)
    identifiers = identifier_objects(plan, prepared, rows)
    if operation in {Operation.DELETE_IDENTIFIERS, Operation.DELETE_PII}:
        return _concat('{"identifiers":', identifiers, "}")
    if operation in {Operation.DELETE_ATTRIBUTES, Operation.AUDIENCE_REMOVE}:
        deletes = _delete_members(plan, prepared, rows)
        return _concat(
            '{"identifiers":',
            identifiers,
            pc.if_else(pc.equal(deletes, ""), "", _concat(",", deletes)),
            "}",
        )
    attributes = _attribute_object(plan, prepared, rows)
    tail = ',"not_append":true}' if operation.not_append else "}"
    return _concat('{"identifiers":', identifiers, ',"attributes":', attributes, tail)


def identifier_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.StringArray:
    default = [c for c in plan.identifiers if c.role is Role.IDENTIFIER]
    custom = [c for c in plan.identifiers if c.role is Role.CUSTOM_IDENTIFIER]
    return _object(
        _members(default, prepared, rows), _nested("custom", _members(custom, prepared, rows))
    )


def _attribute_object(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.StringArray:
    if plan.operation.is_audience:  # td_audience_* are custom array attributes
        return _object(_empty(rows), _nested("custom", _members(plan.payload, prepared, rows)))
    default = plan.by_role(Role.ATTRIBUTE)
    custom = plan.by_role(Role.CUSTOM_ATTRIBUTE)
    return _object(
        _members(default, prepared, rows), _nested("custom", _members(custom, prepared, rows))
    )


def _event_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.StringArray:
    params = _object(
        _members(plan.by_role(Role.EVENT_PARAM), prepared, rows),
        _nested("custom", _members(plan.by_role(Role.CUSTOM_EVENT_PARAM), prepared, rows)),
    )
    has_params = pc.not_equal(params, "{}")
    params_member = pc.if_else(has_params, _concat(',"event_params":', params), "")
    return _concat(
        '{"event_name":',
        prepared["event_name"].json,
        ',"timestamp":',
        prepared["timestamp"].json,
        params_member,
        "}",
    )


def _delete_members(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.StringArray:
    """``,"whole":[...],"partial":{...},"custom":{"whole":[...],"partial":{...}}``, empty parts left out."""
    if plan.operation is Operation.AUDIENCE_REMOVE:
        custom_partial = _members(plan.payload, prepared, rows, arrays_only=True)
        return _nested("custom", _nested("partial", custom_partial))
    default = plan.by_role(Role.ATTRIBUTE)
    custom = plan.by_role(Role.CUSTOM_ATTRIBUTE)
    top = _join_members(
        _named_list("whole", _whole_names(default, prepared, rows)),
        _nested("partial", _members(default, prepared, rows, arrays_only=True)),
    )
    inner = _join_members(
        _named_list("whole", _whole_names(custom, prepared, rows)),
        _nested("partial", _members(custom, prepared, rows, arrays_only=True)),
    )
    return _join_members(top, _nested("custom", inner))


def _whole_names(
    columns: Sequence[ColumnPlan], prepared: Mapping[str, Prepared], rows: int
) -> pa.StringArray:
    """``"a","b"``: the columns whose row holds a single (non-array) value."""
    names = []
    for column in columns:
        values = prepared[column.name]
        scalar = pc.and_(values.present(), pc.invert(_is_list(values, rows)))
        names.append(pc.if_else(scalar, f',"{column.name}"', ""))
    return _strip_comma(_join(names, rows))


def _members(
    columns: Sequence[ColumnPlan],
    prepared: Mapping[str, Prepared],
    rows: int,
    arrays_only: bool = False,
) -> pa.StringArray:
    """``"a":1,"b":"x"`` per row, leaving out nulls (and, with arrays_only, single values)."""
    parts = []
    for column in columns:
        values = prepared[column.name]
        text = values.json
        if arrays_only:
            text = pc.if_else(_is_list(values, rows), text, pa.scalar(None, pa.string()))
        parts.append(pc.fill_null(pc.binary_join_element_wise(f',"{column.name}":', text, ""), ""))
    return _strip_comma(_join(parts, rows))


def _is_list(values: Prepared, rows: int) -> pa.BooleanArray:
    found = pa.array([False] * rows, pa.bool_())
    for lists in (values.string_lists, values.number_lists):
        if lists is not None:
            found = pc.or_(found, pc.is_valid(lists))
    return found


def _join(parts: Sequence[pa.Array], rows: int) -> pa.StringArray:
    if not parts:
        return _empty(rows)
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "")


def _strip_comma(joined: pa.StringArray) -> pa.StringArray:
    return pc.utf8_slice_codeunits(joined, 1)


def _object(*member_lists: pa.StringArray) -> pa.StringArray:
    return _concat("{", _join_members(*member_lists), "}")


def _join_members(*member_lists: pa.StringArray) -> pa.StringArray:
    """Join member lists with commas, skipping the empty ones (never the rows: no nulls here)."""
    with_commas = [pc.if_else(pc.equal(m, ""), "", _concat(",", m)) for m in member_lists]
    return _strip_comma(_join(with_commas, len(member_lists[0])))


def _nested(key: str, members: pa.StringArray) -> pa.StringArray:
    """``"key":{members}`` where members is not empty, else empty."""
    return pc.if_else(pc.equal(members, ""), "", _concat(f'"{key}":{{', members, "}"))


def _named_list(key: str, items: pa.StringArray) -> pa.StringArray:
    return pc.if_else(pc.equal(items, ""), "", _concat(f'"{key}":[', items, "]"))


def _concat(*pieces: str | pa.Array) -> pa.StringArray:
    return pc.binary_join_element_wise(*pieces, "")


def _empty(rows: int) -> pa.StringArray:
    return pa.array([""] * rows, pa.string())
