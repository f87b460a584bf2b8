"""A bound on how deeply a JSON Lines row nests, checked before Arrow's reader sees the file.

Arrow's JSON reader recurses once per level: a row nested ~10,000 levels deep crashes the
process (SIGSEGV), which no ``try`` can catch. So every JSON Lines file is scanned first, a
block at a time with numpy: brackets ``[`` ``{`` minus ``]`` ``}``, summed from the start of
each line, bound the depth from above (brackets inside strings count too, so it may overstate).
Only a line whose bound passes MAX_DEPTH is scanned exactly, in Python, minding strings and
escapes; if it really nests that deep, the file is refused naming the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arrowbulk import JobError
from arrowbulk.plugins.file.formats import open_stream

#: Deeper than any real record; far below where Arrow's reader crashes (~10,000).
MAX_DEPTH = 100
_BLOCK = 1 << 22
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


#: Files found safe in this process, by path, size and time: a file is scanned once.
_checked: set[tuple[str, int, int]] = set()


def check_json_depth(path: Path) -> None:
    """Raise :class:`JobError` if a line of ``path`` nests deeper than MAX_DEPTH."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _checked:
        _scan(path)
        _checked.add(key)


def _scan(path: Path) -> None:
    depth_carry = 0  # bracket sum at the end of the previous block
    base_carry = 0  # bracket sum at the last newline seen
    line_start, line_number = 0, 1  # of the line the previous block ended in
    offset = 0
    line_opens = 0  # brackets opened since the last newline, in earlier blocks
    with open_stream(path) as source:
        while block := source.read(_BLOCK):
            data = np.frombuffer(block, np.uint8)
            most, line_opens = _openings_per_line(data, line_opens)
            if most <= MAX_DEPTH:
                # The common case, and cheap: no line opens more brackets than the limit, so
                # none can nest deeper; only the carried sums are brought up to date.
                newlines = np.flatnonzero(data == 10)
                depth_carry += int(_OPEN[data].sum(dtype=np.int64))
                if newlines.size:
                    line_start = offset + int(newlines[-1]) + 1
                    line_number += int(newlines.size)
                    base_carry = depth_carry - int(
                        _OPEN[data[newlines[-1] + 1 :]].sum(dtype=np.int64)
                    )
                offset += data.size
                continue
            depth = np.cumsum(_OPEN[data], dtype=np.int64) + depth_carry
            newline = data == 10
            positions = np.where(newline, np.arange(data.size), -1)
            last_newline = np.maximum.accumulate(positions)
            base = np.where(last_newline >= 0, depth[np.maximum(last_newline, 0)], base_carry)
            relative = depth - base
            flagged = np.flatnonzero(relative > MAX_DEPTH)
            for before in np.unique(last_newline[flagged]).tolist():  # each suspect line once
                start = offset + before + 1 if before >= 0 else line_start
                number = line_number + int(np.count_nonzero(newline[: before + 1]))
                _check_line(path, start, number)
            newlines = np.flatnonzero(newline)
            if newlines.size:
                line_start = offset + int(newlines[-1]) + 1
                line_number += int(newlines.size)
                base_carry = int(depth[newlines[-1]])
            depth_carry = int(depth[-1])
            offset += data.size


def _openings_per_line(data: np.ndarray, carried: int) -> tuple[int, int]:
    """The most brackets any line of the block opens (the first line counting ``carried``
    openings from earlier blocks), and the openings after the block's last newline."""
    opens = np.cumsum((data == 0x5B) | (data == 0x7B), dtype=np.int64)
    cuts = np.flatnonzero(data == 10)
    ends = np.concatenate([opens[cuts], opens[-1:]])
    per_line = np.diff(ends, prepend=0)
    per_line[0] += carried
    return int(per_line.max()), int(per_line[-1]) if cuts.size else int(per_line[0])


def _check_line(path: Path, start: int, number: int) -> None:
    """Scan one line exactly (strings and escapes minded); refuse it if it is too deep."""
    depth = 0
    in_string = escaped = False
    with open_stream(path) as source:
        while start > 0:  # a decompressing stream cannot seek: read up to the line
            start -= len(source.read(min(start, _BLOCK)))
        while chunk := source.read(_BLOCK):
            for byte in chunk:
                if in_string:
                    if escaped:
                        escaped = False
                    elif byte == 0x5C:  # backslash
                        escaped = True
                    elif byte == 0x22:  # closing quote
                        in_string = False
                elif byte == 0x22:
                    in_string = True
                elif byte in (0x5B, 0x7B):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise JobError(
                            f"{path.name}, line {number}: nested more than {MAX_DEPTH} levels "
                            "deep; refused (Arrow's JSON reader cannot read such a row safely)"
                        )
                elif byte in (0x5D, 0x7D):
                    depth -= 1
                elif byte == 0x0A:
                    return
