"""Insider's JSON bodies, built column-wise from prepared values.

An operation's body is a fixed *layout* (a tree of objects and lists whose leaves are
columns), compiled once per plan. Per batch, numpy decides for every row which members are
present, where commas go and which values need quotes, and :mod:`splice` copies the bytes of
all rows in one Arrow ``take``: no per-row Python dict, no nested joins. A member whose value
is null is left out; a nested object (``custom``, ``partial``, ...) with no member present is
left out too; the top-level objects are always written. The output parses to exactly what a
plain encoder makes from the same record (``tests/test_insider_encode.py`` holds the two side
by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from arrowbulk.plugins.insider.columns import ColumnPlan, Plan, Role
from arrowbulk.plugins.insider.config import Operation
from arrowbulk.plugins.insider.prepare import Prepared
from arrowbulk.plugins.insider.splice import NOTHING, Constants, Pieces, fixed_rows


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


@dataclass
class _Slots:
    """One entry, evaluated for a batch: where it is present and its pieces after the head."""

    present: np.ndarray
    quote: np.ndarray | None = None  # rows whose value opens with a quote (folded into the head)
    body: list[np.ndarray] = field(default_factory=list)


class Encoder:
    """One layout, compiled: :meth:`encode` turns prepared columns into one JSON text per row."""

    def __init__(self, root: Group) -> None:
        self.root = root
        self.constants = Constants()
        self._heads: dict[int, np.ndarray] = {}  # id(entry) -> ids by [comma][quote]
        self._register(root)
        self.constants.array()

    def _register(self, group: Group) -> None:
        opening, closing = group.brackets[:1], group.brackets[1:]
        self.constants.id(opening)
        self.constants.id(closing)
        self.constants.id(b'"')
        for entry in group.entries:
            tail = entry.value.brackets[:1] if isinstance(entry.value, Group) else b""
            self._heads[id(entry)] = np.array(
                [
                    [self.constants.id(comma + entry.head + tail + quote) for quote in (b"", b'"')]
                    for comma in (b"", b",")
                ],
                dtype=np.int64,
            )
            if isinstance(entry.value, Group):
                self._register(entry.value)

    def encode(self, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
        pieces = Pieces(self.constants)
        bases: dict[str, int] = {}
        everywhere = np.ones(rows, dtype=bool)
        body = self._group(self.root, prepared, rows, pieces, bases, everywhere).body
        opening, closing = self.root.brackets[:1], self.root.brackets[1:]
        slots = [
            np.full(rows, self.constants.id(opening)),
            *body,
            np.full(rows, self.constants.id(closing)),
        ]
        index, row_starts = fixed_rows(slots, rows)
        return pieces.splice(index, row_starts)

    def _group(
        self,
        group: Group,
        prepared: Mapping[str, Prepared],
        rows: int,
        pieces: Pieces,
        bases: dict[str, int],
        everywhere: np.ndarray,
    ) -> _Slots:
        """The group's entries (heads with their commas) and closing bracket, without its opening."""
        evaluated = [
            self._entry(entry, prepared, rows, pieces, bases, everywhere) for entry in group.entries
        ]
        earlier = np.zeros(rows, dtype=bool)  # a member before this one is present: comma
        body: list[np.ndarray] = []
        for entry, slots in zip(group.entries, evaluated, strict=True):
            quote = slots.quote if slots.quote is not None else np.zeros(rows, dtype=bool)
            heads = self._heads[id(entry)][earlier.view(np.int8), quote.view(np.int8)]
            body.append(np.where(slots.present, heads, NOTHING))
            body.extend(slots.body)
            earlier = earlier | slots.present
        present = everywhere if group.always else earlier
        return _Slots(present, body=body)

    def _entry(
        self,
        entry: Entry,
        prepared: Mapping[str, Prepared],
        rows: int,
        pieces: Pieces,
        bases: dict[str, int],
        everywhere: np.ndarray,
    ) -> _Slots:
        value = entry.value
        if value is None:
            return _Slots(everywhere)
        if isinstance(value, Group):
            inner = self._group(value, prepared, rows, pieces, bases, everywhere)
            closing = np.where(inner.present, self.constants.id(value.brackets[1:]), NOTHING)
            return _Slots(inner.present, body=[*inner.body, closing])
        values = prepared[value.column]
        present = values.present().to_numpy(zero_copy_only=False)
        if isinstance(value, Name):
            return _Slots(present & ~_holds_list(values, rows))
        holds_list = _holds_list(values, rows) if value.arrays_only else None
        if value.column not in bases:
            bases[value.column] = pieces.add(values.text)
        if holds_list is not None:
            present = present & holds_list
        texts = np.where(present, bases[value.column] + np.arange(rows, dtype=np.int64), NOTHING)
        quote = _quote_mask(values, rows) & present
        closing = np.where(quote, self.constants.id(b'"'), NOTHING)
        return _Slots(present, quote, body=[texts, closing])


def _quote_mask(values: Prepared, rows: int) -> np.ndarray:
    if values.quoted is True:
        return np.ones(rows, dtype=bool)
    if values.quoted is False:
        return np.zeros(rows, dtype=bool)
    return values.quoted


def _holds_list(values: Prepared, rows: int) -> np.ndarray:
    found = np.zeros(rows, dtype=bool)
    for lists in (values.string_lists, values.number_lists):
        if lists is not None:
            found |= lists.is_valid().to_numpy(zero_copy_only=False)
    return found


def layout(plan: Plan) -> Group:
    """The body of one user (or, for events, one event) for the plan's operation."""
    operation = plan.operation
    if operation is Operation.EVENTS:
        return _event(plan)
    entries = [Entry(b'"identifiers":', identifier_group(plan))]
    if operation in {Operation.DELETE_IDENTIFIERS, Operation.DELETE_PII}:
        pass
    elif operation is Operation.AUDIENCE_REMOVE:
        partial = Group(b"{}", _values(plan.payload, arrays_only=True))
        entries.append(Entry(b'"custom":', Group(b"{}", (Entry(b'"partial":', partial),))))
    elif operation is Operation.DELETE_ATTRIBUTES:
        entries.extend(_deletions(plan.by_role(Role.ATTRIBUTE)))
        custom = Group(b"{}", _deletions(plan.by_role(Role.CUSTOM_ATTRIBUTE)))
        entries.append(Entry(b'"custom":', custom))
    else:
        entries.append(Entry(b'"attributes":', _attributes(plan)))
        if operation.not_append:
            entries.append(Entry(b'"not_append":true'))
    return Group(b"{}", tuple(entries), always=True)


def identifier_group(plan: Plan) -> Group:
    default = [c for c in plan.identifiers if c.role is Role.IDENTIFIER]
    custom = [c for c in plan.identifiers if c.role is Role.CUSTOM_IDENTIFIER]
    return Group(b"{}", _values(default) + _custom(custom), always=True)


def _attributes(plan: Plan) -> Group:
    if plan.operation.is_audience:  # td_audience_* are custom array attributes
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


def encode_users(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    """One JSON text (binary) per row: the user object (or, for events, the event object)."""
    return Encoder(layout(plan)).encode(prepared, rows)


def identifier_objects(plan: Plan, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
    return Encoder(identifier_group(plan)).encode(prepared, rows)
