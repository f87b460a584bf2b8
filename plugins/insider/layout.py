"""The shape of Insider's JSON bodies: a tree of objects and lists whose leaves are columns.

One tree per operation (:func:`layout`); :mod:`encode` compiles it. A member whose value is
null is left out; a nested object or list (``custom``, ``partial``, ``whole``) with no member
present is left out too; groups marked ``always`` (the top-level objects) are always written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arrowbulk.plugins.insider.columns import ColumnPlan, Plan, Role
from arrowbulk.plugins.insider.operations import Body, Takes


@dataclass(frozen=True)
class Value:
    """A column's value; with ``arrays_only``, only on rows where it holds an array."""

    column: str
    arrays_only: bool = False


@dataclass(frozen=True)
class Name:
    """The column's name as a list item, on rows where it holds a single (non-array) value."""

    column: str


@dataclass(frozen=True)
class Group:
    """An object (``{}``) or a list (``[]``) of entries; left out when empty unless ``always``."""

    brackets: bytes
    entries: tuple[Entry, ...]
    always: bool = False


@dataclass(frozen=True)
class Entry:
    """``head`` (``"key":`` in an object, the item itself in a list) and what follows it."""

    head: bytes
    value: Value | Name | Group | None = None  # None: a constant, always present


def layout(plan: Plan) -> Group:
    """The body of one user (or, for events, one event) for the plan's operation."""
    spec = plan.operation.spec
    if spec.body is Body.EVENTS:
        return _event(plan)
    entries = [Entry(b'"identifiers":', identifier_group(plan))]
    if spec.body is Body.AUDIENCE_REMOVAL:
        partial = Group(b"{}", _values(plan.payload, arrays_only=True))
        entries.append(Entry(b'"custom":', Group(b"{}", (Entry(b'"partial":', partial),))))
    elif spec.body is Body.DELETIONS:
        entries.extend(_deletions(plan.by_role(Role.ATTRIBUTE)))
        custom = Group(b"{}", _deletions(plan.by_role(Role.CUSTOM_ATTRIBUTE)))
        entries.append(Entry(b'"custom":', custom))
    elif spec.body is Body.ATTRIBUTES:
        entries.append(Entry(b'"attributes":', _attributes(plan)))
        if spec.not_append:
            entries.append(Entry(b'"not_append":true'))
    # Body.IDENTIFIERS: the identifiers alone.
    return Group(b"{}", tuple(entries), always=True)


def identifier_group(plan: Plan) -> Group:
    default = [c for c in plan.identifiers if c.role is Role.IDENTIFIER]
    custom = [c for c in plan.identifiers if c.role is Role.CUSTOM_IDENTIFIER]
    return Group(b"{}", _values(default) + _custom(custom), always=True)


def _attributes(plan: Plan) -> Group:
    if plan.operation.spec.takes is Takes.AUDIENCE:  # td_audience_* are custom array attributes
        return Group(b"{}", _custom(plan.payload), always=True)
    default = plan.by_role(Role.ATTRIBUTE)
    return Group(
        b"{}", _values(default) + _custom(plan.by_role(Role.CUSTOM_ATTRIBUTE)), always=True
    )


def _event(plan: Plan) -> Group:
    params = _values(plan.by_role(Role.EVENT_PARAM))
    params += _custom(plan.by_role(Role.CUSTOM_EVENT_PARAM))
    head = (
        Entry(b'"event_name":', Value("event_name")),
        Entry(b'"timestamp":', Value("timestamp")),
    )
    return Group(b"{}", (*head, Entry(b'"event_params":', Group(b"{}", params))), always=True)


def _deletions(columns: Sequence[ColumnPlan]) -> tuple[Entry, ...]:
    """``"whole":[names of single values],"partial":{array values}``, each left out when empty."""
    names = tuple(Entry(_key(c.name), Name(c.name)) for c in columns)
    return (
        Entry(b'"whole":', Group(b"[]", names)),
        Entry(b'"partial":', Group(b"{}", _values(columns, arrays_only=True))),
    )


def _custom(columns: Sequence[ColumnPlan]) -> tuple[Entry, ...]:
    return (Entry(b'"custom":', Group(b"{}", _values(columns))),) if columns else ()


def _values(columns: Sequence[ColumnPlan], arrays_only: bool = False) -> tuple[Entry, ...]:
    return tuple(Entry(_key(c.name) + b":", Value(c.name, arrays_only)) for c in columns)


def _key(name: str) -> bytes:
    return b'"' + name.encode() + b'"'
