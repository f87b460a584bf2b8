"""``arrowbulk validate``'s report: the figures of an output's dry-run record check as text.

The figure keys are described on :class:`arrowbulk.DryRun`; unknown keys print as
``key=value`` so a plugin's own figures are never hidden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from arrowbulk.summary import aligned

_KNOWN = {
    "records_checked",
    "invalid",
    "stops_on_invalid",
    "rules",
    "normalized",
    "changes",
    "dropped_values",
    "requests",
}
#: Examples shown per rule (tasks checked in parallel may each bring some).
EXAMPLES = 3


def render_dry_run(figures: Mapping[str, Any]) -> str:
    lines = [
        f"records: {figures.get('records_checked', 0):,} checked, "
        f"{figures.get('invalid', 0):,} invalid"
    ]
    others = {k: v for k, v in figures.items() if k not in _KNOWN}
    if others:
        lines.append("figures: " + ", ".join(f"{k}={v}" for k, v in sorted(others.items())))
    for key, title in (("normalized", "values normalized"), ("dropped_values", "values dropped")):
        counts = figures.get(key) or {}
        if counts:
            lines.append(f"{title}: " + _counts(counts))
    rules = figures.get("rules") or {}
    if rules:
        lines.append("")
        lines.append(_rule_table(rules))
    changes = figures.get("changes") or {}
    if changes:
        lines.append("")
        lines.append("changes (before -> after):")
        for column, examples in sorted(changes.items()):
            for before, after in examples:
                lines.append(f"  {column}: {_show(before)} -> {_show(after)}")
    requests = figures.get("requests")
    if requests:
        lines.append("")
        lines.append(f"first {len(requests)} request body(ies), exactly as they would be sent:")
        lines.extend(requests)
    return "\n".join(lines)


def _counts(counts: Mapping[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count:,}" for name, count in ordered)


def _rule_table(rules: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [["rule", "records", "meaning", "examples"]]
    for reason, entry in sorted(rules.items(), key=lambda item: (-item[1]["count"], item[0])):
        examples = "; ".join(
            f"{where}: {_show(value)}" for where, value in entry.get("examples", [])[:EXAMPLES]
        )
        meaning = entry.get("meaning")
        if isinstance(meaning, list):  # the same rule met by tasks checked in parallel
            meaning = meaning[0]
        rows.append([reason, f"{entry['count']:,}", str(meaning or ""), examples])
    return aligned(rows)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
