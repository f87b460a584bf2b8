"""A value that must never be printed: API keys and tokens.

The host wraps every config value whose JSON Schema says ``"writeOnly": true`` in a
:class:`Secret` before a plugin sees it, so a stray ``print(config)``, a log line or an
exception's repr shows ``'***'`` instead of the key. Code that needs the value calls
:meth:`Secret.reveal` at the one place it is sent.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

MASK: Final = "***"

# Every secret this process has seen, in every form it takes in text, so that text leaving the
# process (error messages, log lines, summaries, reject files) can be scrubbed even if a value
# escaped its wrapper.
_known: set[str] = set()
_known_lock = threading.Lock()


def text_forms(value: str) -> set[str]:
    """How ``value`` can appear in text: raw, repr- and JSON-escaped, URL-encoded, stripped."""
    forms = {value, value.strip()}
    forms.add(repr(value)[1:-1])
    forms.add(value.encode("unicode_escape").decode("ascii"))
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(urllib.parse.quote_plus(value))
    # Escaped twice: a JSON text quoted inside another JSON text or a repr of one.
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    return {form for form in forms if len(form) >= 8}


def scrub(text: str) -> str:
    """``text`` with every known secret, in any of its forms, replaced by the mask."""
    with _known_lock:
        values = sorted(_known, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def scrub_json(value: Any) -> Any:
    """``value`` (JSON-shaped) with every string scrubbed, before it is encoded."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): scrub_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v) for v in value]
    return value


_travel = threading.local()


@contextmanager
def shipping() -> Iterator[None]:
    """Within this block, on this thread, a Secret pickles: to hand a task to an executor's
    workers, which need the key to send (use ``tls://`` for a cluster beyond this machine).
    Anywhere else pickling one is an error, so no secret reaches a state or spool file."""
    _travel.allowed = True
    try:
        yield
    finally:
        _travel.allowed = False


class Secret:
    """An opaque holder for a secret string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        # Scrubbing is a second guard behind the wrapper; values this short would mask
        # ordinary words in messages (a sample config's key is literally "api_key").
        if len(value.strip()) >= 8:
            with _known_lock:
                _known.update(text_forms(value))

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
        if getattr(_travel, "allowed", False):
            return (Secret, (self._value,))
        raise TypeError("a Secret cannot be pickled")
