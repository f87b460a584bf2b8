"""JSON texts spliced from constants and column values with one Arrow ``take`` per batch.

Nested ``binary_join_element_wise`` calls copy every byte once per level and pay a fixed cost
per row and call (about 100 ns for three inputs on the benchmark machine). Here a batch's
pieces are laid out once: numpy computes, per output row, the sequence of pieces it is made
of (an index into one array holding the constants and then every column's values), and a
single ``take`` copies each byte once (about 15 ns per piece). A null piece adds nothing,
which is how a left-out member or an absent comma is written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

#: The index of the null piece: it adds no bytes.
NOTHING = 0


class Constants:
    """The fixed byte strings of a layout (keys, brackets, commas), numbered from 1.

    Shared by the task threads of a job; new constants appear while the first batches are
    encoded, so both methods hold a lock (an array made before a constant was added must not
    be kept as the array of all constants).
    """

    def __init__(self) -> None:
        self._ids: dict[bytes, int] = {}
        self._texts: list[bytes] = [b""]  # NOTHING
        self._array: pa.Array | None = None
        self._lock = threading.Lock()

    def id(self, text: bytes) -> int:
        if not text:
            return NOTHING
        with self._lock:
            found = self._ids.get(text)
            if found is None:
                found = self._ids[text] = len(self._texts)
                self._texts.append(text)
                self._array = None
            return found

    def array(self) -> pa.Array:
        """All constants so far (a :class:`Pieces` takes them when it is made)."""
        with self._lock:
            if self._array is None:
                self._array = pa.array(self._texts, pa.binary())
            return self._array


class Pieces:
    """What one splice reads from: the constants, then columns appended with :meth:`add`."""

    def __init__(self, constants: Constants) -> None:
        self._arrays = [constants.array()]
        self._size = len(self._arrays[0])

    def add(self, values: pa.Array) -> int:
        """Append a column of texts; returns the index of its first value.

        The caller must not take a null value's position (a null's bytes are undefined).
        """
        base = self._size
        # Only present values are taken, so the validity bitmap is not needed: without it
        # ``take`` skips a null check per piece. A string array's buffers serve as binary.
        if not (pa.types.is_string(values.type) or pa.types.is_binary(values.type)):
            values = values.cast(pa.binary())
        buffers = values.buffers()
        self._arrays.append(
            pa.Array.from_buffers(pa.binary(), len(values), [None, *buffers[1:3]], 0, values.offset)
        )
        self._size += len(values)
        return base

    def splice(
        self, index: np.ndarray, row_starts: np.ndarray, validity: np.ndarray | None = None
    ) -> pa.Array:
        """Row ``r`` = the pieces ``index[row_starts[r]:row_starts[r + 1]]``, concatenated.

        ``validity`` (optional) marks the rows that are not null.
        """
        large = sum(_data_size(a) for a in self._arrays) >= 2**31 - 1
        kind = pa.large_binary() if large else pa.binary()
        source = pa.concat_arrays([a.cast(kind) for a in self._arrays] if large else self._arrays)
        taken = source.take(pa.array(index, pa.int64()))
        offsets = np.frombuffer(taken.buffers()[1], np.int64 if large else np.int32)
        row_offsets = np.ascontiguousarray(offsets[taken.offset + row_starts])
        data = taken.buffers()[2] or pa.py_buffer(b"")
        rows = len(row_starts) - 1
        if validity is None or validity.all():
            return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(row_offsets), data])
        bitmap = pa.py_buffer(np.packbits(validity, bitorder="little"))
        nulls = int(rows - np.count_nonzero(validity))
        return pa.Array.from_buffers(
            kind, rows, [bitmap, pa.py_buffer(row_offsets), data], null_count=nulls
        )


def _data_size(values: pa.Array) -> int:
    buffers = values.buffers()
    return buffers[2].size if len(buffers) > 2 and buffers[2] is not None else 0


def fixed_rows(slots: Sequence[np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The index and row starts for rows of ``len(slots)`` pieces each: row r's k-th piece is
    ``slots[k][r]``."""
    width = len(slots)
    index = np.empty((rows, width), dtype=np.int64)
    for position, slot in enumerate(slots):
        index[:, position] = slot
    return index.ravel(), np.arange(0, rows * width + 1, width, dtype=np.int64)


def join_lists(lists: pa.ListArray, items: pa.Array, quoted: bool, first_item: int = 0) -> pa.Array:
    """``[a,b]`` per row from the items' JSON texts (``["a","b"]`` when ``quoted``); null stays null.

    ``items`` are texts of ``lists.values`` from position ``first_item`` on (a sliced list's
    offsets point into the whole values array; only the slice's own items need texts). A row
    of n items is 2n + 1 pieces: ``["``, item, ``","``, item, ``"]`` (the brackets, quotes
    and commas between two items are one piece).
    """
    constants = _LIST_CONSTANTS
    rows = len(lists)
    offsets = np.frombuffer(lists.buffers()[1], np.int32)[lists.offset : lists.offset + rows + 1]
    lengths = np.diff(offsets).astype(np.int64)
    valid = np.ones(rows, dtype=bool)
    if lists.null_count:
        valid = lists.is_valid().to_numpy(zero_copy_only=False)
        lengths[~valid] = 0  # a null list's range is not required to be empty
    slots = np.where(lengths > 0, 2 * lengths + 1, valid.astype(np.int64))
    row_starts = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(slots, out=row_starts[1:])
    index = np.empty(int(row_starts[-1]), dtype=np.int64)
    first = row_starts[:-1]
    opening, between, closing = (b'["', b'","', b'"]') if quoted else (b"[", b",", b"]")
    index[first[valid & (lengths == 0)]] = constants.id(b"[]")
    index[first[lengths > 0]] = constants.id(opening)
    pieces = Pieces(constants)
    total = int(lengths.sum())
    if total:
        base = pieces.add(items)
        # Arrays of one number per item, computed in place and dropped when used: a wide
        # list column (20 items a row) makes millions of items per step.
        position = np.arange(total, dtype=np.int64)  # each item's place in its row
        position -= np.repeat(np.cumsum(lengths) - lengths, lengths)
        taken = np.repeat(offsets[:-1] - first_item + base, lengths)
        taken += position
        if items.null_count:  # a null item adds nothing (such a record is refused anyway)
            taken[~items.is_valid().to_numpy(zero_copy_only=False)[taken - base]] = NOTHING
        slot = np.repeat(first + 1, lengths)
        slot += 2 * position
        index[slot] = taken
        del taken
        last = position == np.repeat(lengths - 1, lengths)
        del position
        slot += 1
        index[slot] = np.where(last, constants.id(closing), constants.id(between))
    return pieces.splice(index, row_starts, None if lists.null_count == 0 else valid)


_LIST_CONSTANTS = Constants()
for _text in (b"[]", b"[", b",", b"]", b'["', b'","', b'"]'):
    _LIST_CONSTANTS.id(_text)
