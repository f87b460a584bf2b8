"""Resume state: per task, how many leading rows are settled, written durably.

A row is *settled* when the destination acknowledged it or it was rejected with a reason
(and written to the reject file). Each task's checkpoint is its watermark: rows ``[0, n)``
are all settled. Rows above the watermark that were acknowledged out of order are sent again
on resume, so resends are bounded by what was in flight. Addressing rows by position, not by
batch, keeps a resume valid when batch or request sizes change; a changed config or input
(files, their sizes and times) is refused.

The file is JSON, replaced atomically (write, fsync, rename, fsync the folder) after every
change, so a crash or ``kill -9`` at any moment leaves the previous or the next state.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arrowbulk.errors import ConfigError

VERSION = 1


@dataclass
class TaskState:
    settled: int = 0  # rows [0, settled) are acknowledged or rejected
    sent: int = 0  # rows [0, sent) were handed to the destination at least once
    done: bool = False  # the task committed


@dataclass
class State:
    version: int
    fingerprint: str
    described: dict[str, Any]
    run_ids: list[str] = field(default_factory=list)
    complete: bool = False
    tasks: dict[str, TaskState] = field(default_factory=dict)


def fingerprint_of(described: dict[str, Any]) -> str:
    canonical = json.dumps(described, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Checkpoint:
    """The state file of one job; thread-safe."""

    def __init__(self, path: Path, state: State, resumed: bool) -> None:
        self.path = path
        self.state = state
        self.resumed = resumed
        self.previous = {k: TaskState(**asdict(v)) for k, v in state.tasks.items()}
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: Path, described: dict[str, Any], task_count: int, run_id: str
    ) -> Checkpoint:
        """Load ``path`` (refusing one written for another config or input) or start one."""
        fingerprint = fingerprint_of(described)
        if path.exists():
            state = _load(path)
            if state.fingerprint != fingerprint:
                changed = sorted(k for k in described if state.described.get(k) != described.get(k))
                raise ConfigError(
                    f"--resume {path}: the state was written for a different "
                    f"{' and '.join(changed) or 'job'}; resuming would skip or repeat the wrong rows. "
                    "Restore the original config and input, or start a new state file"
                )
            if len(state.tasks) != task_count:
                raise ConfigError(
                    f"--resume {path}: the input now splits into {task_count} tasks, not {len(state.tasks)}"
                )
            resumed = True
        else:
            state = State(
                VERSION,
                fingerprint,
                described,
                tasks={str(i): TaskState() for i in range(task_count)},
            )
            resumed = False
        state.run_ids.append(run_id)
        checkpoint = cls(path, state, resumed)
        checkpoint._write()
        return checkpoint

    def task(self, index: int) -> TaskState:
        with self._lock:
            return TaskState(**asdict(self.state.tasks[str(index)]))

    def update(
        self,
        index: int,
        *,
        settled: int | None = None,
        sent: int | None = None,
        done: bool | None = None,
    ) -> None:
        with self._lock:
            task = self.state.tasks[str(index)]
            changed = False
            if settled is not None and settled > task.settled:
                task.settled, changed = settled, True
            if sent is not None and sent > task.sent:
                task.sent, changed = sent, True
            if done and not task.done:
                task.done, changed = True, True
            if changed:
                self._write_locked()

    def finish(self) -> None:
        with self._lock:
            self.state.complete = True
            self._write_locked()

    def figures(self) -> dict[str, Any]:
        """What this run owes to the previous ones: rows skipped, rows sent again at most."""
        skipped = sum(t.settled for t in self.previous.values())
        resent = sum(max(0, t.sent - t.settled) for t in self.previous.values() if not t.done)
        return {
            "state": str(self.path),
            "resumed": self.resumed,
            "skipped_rows": skipped,
            "resent_at_most": resent,
        }

    def _write(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        data = json.dumps(asdict(self.state), indent=1, default=str).encode()
        temporary = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _load(path: Path) -> State:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        tasks = {k: TaskState(**v) for k, v in raw.pop("tasks").items()}
        state = State(**raw, tasks=tasks)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(
            f"--resume {path}: not a readable arrowbulk state file ({error})"
        ) from None
    if state.version != VERSION:
        raise ConfigError(
            f"--resume {path}: state version {state.version}, this arrowbulk writes {VERSION}"
        )
    return state
