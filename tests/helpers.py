"""Helpers the tests share (import them from here, not from conftest)."""

from __future__ import annotations

import os

#: Property tests run their full count in CI (which sets CI=true) and a fifth of it elsewhere,
#: so the README's test command stays quick on a laptop and CI still searches widely.
FULL_PROPERTY_RUNS = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def examples(full: int) -> int:
    """How many examples a property test runs: ``full`` in CI, a fifth (at least 10) elsewhere."""
    return full if FULL_PROPERTY_RUNS else max(10, full // 5)
