"""Insider's JSON bodies, built column-wise from prepared values.

A :mod:`layout` is compiled once per plan into a row of *pieces*: each column's value, and
between two values one *gap*: all the fixed text that may stand there (a closing quote,
brackets, a comma, the next key and its opening quote). A gap's text depends on a few
conditions per row (is this member present, is one before it, is the value quoted), so each
gap has a small table from those bits to a constant. Per batch, numpy computes the bits and
looks the gaps up, and :mod:`splice` copies every row's pieces in one Arrow ``take``: no
per-row Python dict, no nested joins, about two pieces per member. The output parses to
exactly what a plain encoder makes from the same record (``tests/test_insider_encode.py``
holds the two side by side).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa

from arrowbulk.plugins.insider.layout import Entry, Group, Name, Value
from arrowbulk.plugins.insider.prepare import Prepared
from arrowbulk.plugins.insider.splice import NOTHING, Constants, Pieces, fixed_rows

# A condition of one entry: ("present" | "comma" | "quote" | "close-quote", id(entry)).
Bit = tuple[str, int]
# Per batch, a condition is known for every row (bool) or varies (a mask of rows).
Truth = bool | np.ndarray

#: Gaps depending on more conditions are cut in two, so a gap's table has at most 2**8 texts.
MAX_BITS = 8


@dataclass(frozen=True)
class _Part:
    """Some fixed text of a gap, given the truth of its bits."""

    bits: tuple[Bit, ...]
    text: Callable[..., bytes]


@dataclass(frozen=True)
class Gap:
    """The fixed text between two values: parts, each present or not by its bits."""

    parts: tuple[_Part, ...]

    @cached_property
    def bits(self) -> tuple[Bit, ...]:
        return tuple(dict.fromkeys(bit for part in self.parts for bit in part.bits))

    def text(self, truth: Mapping[Bit, bool]) -> bytes:
        return b"".join(part.text(*(truth[bit] for bit in part.bits)) for part in self.parts)


@dataclass(frozen=True)
class _Column:
    entry: Entry
    value: Value


class Encoder:
    """One layout, compiled: :meth:`encode` turns prepared columns into one JSON text per row."""

    def __init__(self, root: Group) -> None:
        self.root = root
        self.constants = Constants()
        self.pieces: list[Gap | _Column] = []
        self._parts: list[_Part] = []
        self._tables: dict[tuple[int, tuple[bool | None, ...]], np.ndarray] = {}
        opening, closing = root.brackets[:1], root.brackets[1:]
        self._add(_Part((), lambda: opening))
        self._group(root)
        self._add(_Part((), lambda: closing))
        self._close_gap()

    # -- compiling ---------------------------------------------------------------------------

    def _add(self, part: _Part) -> None:
        bits = set(part.bits).union(*(p.bits for p in self._parts))
        if len(bits) > MAX_BITS:
            self._close_gap()
        self._parts.append(part)

    def _close_gap(self) -> None:
        if self._parts:
            self.pieces.append(Gap(tuple(self._parts)))
            self._parts = []

    def _group(self, group: Group) -> None:
        for entry in group.entries:
            present, comma = ("present", id(entry)), ("comma", id(entry))
            value = entry.value
            if isinstance(value, Group):
                head = entry.head + value.brackets[:1]
                self._add(_Part((present, comma), _head(head)))
                self._group(value)
                closing = value.brackets[1:]
                self._add(_Part((present,), lambda p, c=closing: c if p else b""))
            elif isinstance(value, Value):
                quote = ("quote", id(entry))
                self._add(_Part((present, comma, quote), _quoted_head(entry.head)))
                self._close_gap()
                self.pieces.append(_Column(entry, value))
                self._add(_Part((("close-quote", id(entry)),), lambda q: b'"' if q else b""))
            else:  # a column's name in a list, or fixed text (always present)
                self._add(_Part((present, comma), _head(entry.head)))

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, prepared: Mapping[str, Prepared], rows: int) -> pa.Array:
        if any(p.text_of is not None for p in prepared.values()):
            raise AssertionError("a check-only column reached the encoder: it has no JSON text")
        truth: dict[Bit, Truth] = {}
        self._evaluate(self.root, prepared, truth)
        gaps = {
            position: self._gap_ids(position, piece, truth, rows)
            for position, piece in enumerate(self.pieces)
            if isinstance(piece, Gap)
        }
        pieces = Pieces(self.constants)  # after the gaps: they may add constants
        row_numbers = np.arange(rows, dtype=np.int64)
        slots = []
        for position, piece in enumerate(self.pieces):
            if isinstance(piece, Gap):
                slots.append(gaps[position])
                continue
            present = truth[("present", id(piece.entry))]
            base = pieces.add(prepared[piece.value.column].text)
            slots.append(np.where(present, base + row_numbers, NOTHING))
        index, row_starts = fixed_rows(slots, rows)
        return pieces.splice(index, row_starts)

    def _evaluate(
        self, group: Group, prepared: Mapping[str, Prepared], truth: dict[Bit, Truth]
    ) -> Truth:
        """Each entry's bits in ``truth``; returns where the group has a member."""
        earlier: Truth = False
        for entry in group.entries:
            key = id(entry)
            truth[("comma", key)] = earlier
            value = entry.value
            present: Truth
            if value is None:
                present = True
            elif isinstance(value, Group):
                present = self._evaluate(value, prepared, truth)
            else:
                values = prepared[value.column]
                valid: np.ndarray = values.present().to_numpy(zero_copy_only=False)
                present = valid
                if isinstance(value, Name):
                    present = valid & ~_holds_list(values, len(valid))
                else:
                    if value.arrays_only:
                        present = valid & _holds_list(values, len(valid))
                    quote = values.quoted
                    truth[("quote", key)] = quote
                    truth[("close-quote", key)] = _and(present, quote)
            truth[("present", key)] = present
            earlier = _or(earlier, present)
        return True if group.always else earlier

    def _gap_ids(
        self, position: int, gap: Gap, truth: Mapping[Bit, Truth], rows: int
    ) -> np.ndarray:
        """The constant of this gap on each row."""
        bits = gap.bits
        known = tuple(t if isinstance(t, bool) else None for t in (truth[b] for b in bits))
        varying = [b for b, k in zip(bits, known, strict=True) if k is None]
        table = self._tables.get((position, known))
        if table is None:
            table = self._tables[(position, known)] = self._table(gap, bits, known, varying)
        if not varying:
            return np.full(rows, table[0], dtype=np.int64)
        code = np.zeros(rows, dtype=np.uint8)
        for shift, bit in enumerate(varying):
            code |= np.asarray(truth[bit], dtype=np.uint8) << shift
        ids: np.ndarray = table[code]
        return ids

    def _table(
        self, gap: Gap, bits: tuple[Bit, ...], known: tuple[bool | None, ...], varying: list[Bit]
    ) -> np.ndarray:
        """Constant ids for every combination of the varying bits (bit k of the code = varying[k])."""
        fixed = {b: k for b, k in zip(bits, known, strict=True) if k is not None}
        table = np.empty(2 ** len(varying), dtype=np.int64)
        for code, values in enumerate(itertools.product((False, True), repeat=len(varying))):
            # product() counts with the first bit most significant; codes put it least.
            combination = dict(zip(reversed(varying), values, strict=True))
            table[code] = self.constants.id(gap.text({**fixed, **combination}))
        return table


def _head(head: bytes) -> Callable[[bool, bool], bytes]:
    return lambda present, comma: (b"," + head if comma else head) if present else b""


def _quoted_head(head: bytes) -> Callable[[bool, bool, bool], bytes]:
    def text(present: bool, comma: bool, quote: bool) -> bytes:
        if not present:
            return b""
        return (b"," if comma else b"") + head + (b'"' if quote else b"")

    return text


def _and(a: Truth, b: Truth) -> Truth:
    if isinstance(a, bool) and isinstance(b, bool):
        return a and b
    if a is False or b is False:
        return False
    if a is True:
        return b
    if b is True:
        return a
    return a & b


def _or(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    if a is False:
        return b
    if b is False:
        return a
    return a | b


def _holds_list(values: Prepared, rows: int) -> np.ndarray:
    found = np.zeros(rows, dtype=bool)
    for lists in (values.string_lists, values.number_lists):
        if lists is not None:
            found |= lists.is_valid().to_numpy(zero_copy_only=False)
    return found
