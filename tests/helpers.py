"""Helpers the tests share (import them from here, not from conftest)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import yaml

#: Property tests run their full count in CI (which sets CI=true) and a fifth of it elsewhere,
#: so the README's test command stays quick on a laptop and CI still searches widely.
FULL_PROPERTY_RUNS = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def examples(full: int) -> int:
    """How many examples a property test runs: ``full`` in CI, a fifth (at least 10) elsewhere."""
    return full if FULL_PROPERTY_RUNS else max(10, full // 5)


def sample_table(rows: int = 10) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": pa.array([f"név-{i}" if i % 4 else None for i in range(rows)], pa.string()),
            "score": pa.array([i / 3 for i in range(rows)], pa.float64()),
            "active": pa.array([i % 2 == 0 for i in range(rows)], pa.bool_()),
            "tags": pa.array(
                [[f"t{i}", "x"] if i % 3 else [] for i in range(rows)], pa.list_(pa.string())
            ),
            "at": pa.array(
                [dt.datetime(2026, 1, 1) + dt.timedelta(hours=i) for i in range(rows)],
                pa.timestamp("us"),
            ),
        }
    )


# --- Insider ---

PARTNER = "acme"
API_KEY = "test-key-7f3a9c2e51"


def write_insider_job(
    folder: Path,
    url: str,
    data: str,
    source: dict[str, Any] | None = None,
    exec_config: dict[str, Any] | None = None,
    **out: Any,
) -> Path:
    """A job reading ``data`` (beside it; or the input ``source``) into the sandbox at
    ``url``; returns the YAML's path."""
    config = {
        "type": "insider",
        "api_key": API_KEY,
        "partner_name": PARTNER,
        "endpoint": url,
        **out,
    }
    pipeline = {"in": source or {"type": "file", "path": data}, "out": config}
    if exec_config:
        pipeline["exec"] = exec_config
    job = folder / "job.yml"
    job.write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    return job


def bodies(sandbox, path: str = "/api/user/v1/upsert") -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.requests if r["path"] == path and "body" in r]


# --- Executors ---


_BOARDS: dict[int, MemoryBoard] = {}


def _board(key: int) -> MemoryBoard:
    return _BOARDS[key]


class MemoryBoard:
    """A TaskBoard in this process's memory (what a cluster keeps in its scheduler); shipped
    tasks find the same board again (it pickles as a reference)."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}
        self.published: list[tuple[int, int]] = []
        _BOARDS[id(self)] = self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_board, (id(self),))

    def attach(self) -> None:
        pass

    def settled(self, task_index: int) -> int:
        return self.marks.get(task_index, 0)

    def publish(self, task_index: int, settled: int, in_doubt: int) -> None:
        self.marks[task_index] = settled
        self.published.append((task_index, settled))

    def share(self) -> float:
        return 1.0

    def stopping(self) -> BaseException | None:
        return None


def pickling_executor() -> type:
    """An executor that ships each task through cloudpickle and runs it here, one by one:
    the remote path (task objects by value, open_remote, the board) without a cluster."""
    import cloudpickle

    from arrowbulk.executor import ExecutorPlugin, TaskBoard

    class PicklingExecutor(ExecutorPlugin):
        type_name = "pickling"
        boards: ClassVar[list[MemoryBoard]] = []

        @classmethod
        def config_schema(cls) -> dict[str, Any]:
            return {"type": "object", "properties": {"lose_first_attempt_of": {"type": "integer"}}}

        def run(self, work: Any, tasks: Any, on_outcome: Any, on_progress: Any) -> None:
            board = MemoryBoard()
            PicklingExecutor.boards.append(board)
            shipped = cloudpickle.dumps(work(board))
            for index in tasks:
                on_outcome(cloudpickle.loads(shipped)(index))

    TaskBoard.register(MemoryBoard)
    return PicklingExecutor
