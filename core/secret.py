"""A value that must never be printed: API keys and tokens.

The host wraps every config value whose JSON Schema says ``"writeOnly": true`` in a
:class:`Secret` before a plugin sees it, so a stray ``print(config)``, a log line or an
exception's repr shows ``'***'`` instead of the key. Code that needs the value calls
:meth:`Secret.reveal` at the one place it is sent.
"""

from __future__ import annotations

import threading
from typing import Final

MASK: Final = "***"

# Every secret this process has seen, so that text leaving the process (error messages, log
# lines, summaries, reject files) can be scrubbed even if a value escaped its wrapper.
_known: set[str] = set()
_known_lock = threading.Lock()


def scrub(text: str) -> str:
    """``text`` with every known secret value replaced by the mask."""
    with _known_lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class Secret:
    """An opaque holder for a secret string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        # Scrubbing is a second guard behind the wrapper; values this short would mask
        # ordinary words in messages (a sample config's key is literally "api_key").
        if len(value) >= 8:
            with _known_lock:
                _known.add(value)

    def reveal(self) -> str:
        """The secret itself; call only where it leaves the process (an HTTP header)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
