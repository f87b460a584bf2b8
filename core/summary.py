"""The account a job gives of itself: every row read is accepted, rejected or unsent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arrowbulk.spi import TaskReport


@dataclass
class JobSummary:
    """What a run did, for the screen and for ``--summary-json``."""

    run_id: str
    input_type: str
    output_type: str
    status: str = "running"
    tasks: int = 0
    tasks_committed: int = 0
    rows_read: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    unsent: int = 0
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    config_diff: dict[str, Any] = field(default_factory=dict)
    #: The error that ended a failed run, for the CLI to pick its exit code.
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add_report(self, report: TaskReport) -> None:
        self.accepted += report.accepted
        self.unsent += report.unsent
        for reason, count in report.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        for key, value in report.details.items():
            self.details[key] = merge_detail(self.details.get(key), value)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "input": self.input_type,
            "output": self.output_type,
            "tasks": self.tasks,
            "tasks_committed": self.tasks_committed,
            "rows": {
                "read": self.rows_read,
                "accepted": self.accepted,
                "rejected": self.rejected_total,
                "unsent": self.unsent,
            },
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_read / self.seconds) if self.seconds > 0 else None,
            "error": self.error,
            "details": self.details,
            "config_diff": self.config_diff,
        }

    def render(self) -> str:
        rate = f"{self.rows_read / self.seconds:,.0f} rows/s" if self.seconds > 0 else "-"
        lines = [
            f"arrowbulk {self.input_type} -> {self.output_type}: {self.status.upper()}"
            f"  (run {self.run_id})",
            f"  rows read      {self.rows_read:>12,}",
            f"  accepted       {self.accepted:>12,}",
            f"  rejected       {self.rejected_total:>12,}",
        ]
        lines += [
            f"    {reason:<26} {count:>8,}" for reason, count in sorted(self.rejected.items())
        ]
        lines += [
            f"  unsent         {self.unsent:>12,}",
            f"  tasks          {self.tasks_committed:>5} of {self.tasks} committed",
            f"  time           {self.seconds:>11,.2f}s  ({rate})",
        ]
        for key, value in sorted(self.details.items()):
            lines.append(f"  {key:<14} {_render_value(value)}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def merge_detail(old: Any, new: Any) -> Any:
    """Combine two tasks' detail values: numbers add, mappings merge, the rest collects."""
    if old is None:
        return new
    if new is None:
        return old  # one task had nothing to say (no reject file of its own, say)
    if isinstance(old, bool) or isinstance(new, bool):
        return new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = merge_detail(merged.get(key), value)
        return merged
    if isinstance(old, list):
        return old + (new if isinstance(new, list) else [new])
    return new if old == new else [old, new]


def _render_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_render_value(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def aligned(grid: list[list[str]]) -> str:
    """Rows of cells as text in aligned columns (two spaces apart, no trailing spaces)."""
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in grid
    )
