"""Resume state: per task, how many leading rows are settled, written durably.

A row is *settled* when the destination acknowledged it or it was rejected with a reason
(and written to the reject file). Each task's checkpoint is its watermark: rows ``[0, n)``
are all settled. Rows above the watermark that went out but were not settled in order are sent
again on resume; ``in_doubt`` counts them, written *before* they go out, so it bounds the
duplicates a crash can cause. Addressing rows by position, not by batch, keeps a resume valid
when batch or request sizes change; a changed config or input is refused, and an input whose
rows may come in another order is resumed from its spool (see :mod:`arrowbulk.spool`).

The file is JSON, replaced atomically (write a uniquely named temporary file, fsync, rename,
fsync the folder) after every change, so a crash or ``kill -9`` at any moment leaves the
previous or the next state. One run at a time holds ``STATE.lock`` (an exclusive ``flock``
with the holder's process id in it); a failed write stops the job (:class:`StateWriteError`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arrowbulk.errors import ConfigError, JobError
from arrowbulk.writable import write_atomically

VERSION = 2


class StateWriteError(JobError):
    """The state file could not be written; the job stops, since progress would be lost."""


@dataclass
class TaskState:
    settled: int = 0  # rows [0, settled) are acknowledged or rejected
    in_doubt: int = 0  # rows at or above `settled` sent at least once (resent on resume)
    done: bool = False  # the task committed


@dataclass
class State:
    version: int
    fingerprint: str
    described: dict[str, Any]
    run_ids: list[str] = field(default_factory=list)
    complete: bool = False
    tasks: dict[str, TaskState] = field(default_factory=dict)
    #: For an input read through a spool: the spool's rows per task, once it is complete.
    spool: dict[str, Any] | None = None
    #: What the input read across the runs of this state (an incremental input's greatest
    #: row), so a resumed run's config diff covers the tasks it skipped.
    input_diff: dict[str, Any] | None = None


def fingerprint_of(described: dict[str, Any]) -> str:
    canonical = json.dumps(described, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class StateLock:
    """``STATE.lock``, held exclusively by one run; a second run is refused at once."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ConfigError(
                f"--resume: cannot create the lock file {self.path}: {error.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"--resume {self.path.with_suffix('')}: another arrowbulk run (process id "
                f"{holder}) is using this state file; wait for it to end, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, reused)
            self._fd = None


class Checkpoint:
    """The state file of one job; thread-safe."""

    def __init__(self, path: Path, state: State, resumed: bool) -> None:
        self.path = path
        self.state = state
        self.resumed = resumed
        self.previous = {k: TaskState(**asdict(v)) for k, v in state.tasks.items()}
        self.failed: StateWriteError | None = None
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
        with checkpoint._lock:
            checkpoint._write_locked()
        return checkpoint

    @staticmethod
    def peek(path: Path) -> State | None:
        """The state at ``path`` as it is (None when there is none), without taking it over."""
        return _load(path) if path.exists() else None

    def task(self, index: int) -> TaskState:
        with self._lock:
            return TaskState(**asdict(self.state.tasks[str(index)]))

    def update(
        self,
        index: int,
        *,
        settled: int | None = None,
        in_doubt: int | None = None,
        done: bool | None = None,
    ) -> None:
        """Record a task's progress durably; raise :class:`StateWriteError` if it cannot be."""
        with self._lock:
            if self.failed is not None:
                raise self.failed
            task = self.state.tasks[str(index)]
            before = (task.settled, task.in_doubt, task.done)
            if settled is not None and settled > task.settled:
                task.settled = settled
            if in_doubt is not None:
                task.in_doubt = in_doubt
            if done:
                task.done, task.in_doubt = True, 0
            if (task.settled, task.in_doubt, task.done) != before:
                self._write_locked()

    def record_spool(self, spool: dict[str, Any]) -> None:
        with self._lock:
            self.state.spool = spool
            self._write_locked()

    def record_input_diff(self, diff: dict[str, Any]) -> None:
        with self._lock:
            if diff and diff != self.state.input_diff:
                self.state.input_diff = diff
                self._write_locked()

    def finish(self) -> None:
        with self._lock:
            self.state.complete = True
            self._write_locked()

    def figures(self) -> dict[str, Any]:
        """What this run owes to the previous ones: rows skipped, rows sent again at most."""
        skipped = sum(t.settled for t in self.previous.values())
        resent = sum(t.in_doubt for t in self.previous.values() if not t.done)
        return {
            "state": str(self.path),
            "resumed": self.resumed,
            "skipped_rows": skipped,
            "resent_at_most": resent,
        }

    def _write_locked(self) -> None:
        data = json.dumps(asdict(self.state), indent=1, default=str).encode()
        try:
            write_atomically(self.path, lambda temporary: temporary.write_bytes(data))
        except OSError as error:
            self.failed = StateWriteError(
                f"cannot write the resume state {self.path}: {error.strerror or error} "
                f"(errno {error.errno}); the job stopped so that no progress goes unrecorded. "
                "Free space or fix the folder, then rerun with the same --resume"
            )
            raise self.failed from None


def _load(path: Path) -> State:
    problem = f"--resume {path}: not a readable arrowbulk state file"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{problem} ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{problem} (expected a JSON object)")
    if raw.get("version") != VERSION:
        raise ConfigError(
            f"--resume {path}: state version {raw.get('version')!r}, this arrowbulk writes {VERSION}; "
            "finish that job with the arrowbulk that started it, or start a new state file"
        )
    return State(
        version=VERSION,
        fingerprint=_field(raw, "fingerprint", str, problem),
        described=_field(raw, "described", dict, problem),
        run_ids=[str(r) for r in _field(raw, "run_ids", list, problem)],
        complete=_field(raw, "complete", bool, problem),
        tasks={
            str(key): _task_state(value, f"{problem} (tasks.{key})")
            for key, value in _field(raw, "tasks", dict, problem).items()
        },
        spool=_field(raw, "spool", dict, problem, optional=True),
        input_diff=_field(raw, "input_diff", dict, problem, optional=True),
    )


def _field(raw: dict[str, Any], key: str, kind: type, problem: str, optional: bool = False) -> Any:
    value = raw.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        raise ConfigError(
            f"{problem} ({key} must be a JSON {_json_name(kind)}, found {type(value).__name__})"
        )
    return value


def _task_state(value: Any, problem: str) -> TaskState:
    if not isinstance(value, dict) or set(value) - {"settled", "in_doubt", "done"}:
        raise ConfigError(f"{problem}: expected an object with settled, in_doubt, done")
    settled, in_doubt, done = (
        value.get("settled", 0),
        value.get("in_doubt", 0),
        value.get("done", False),
    )
    numbers_ok = all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (settled, in_doubt)
    )
    if not numbers_ok or not isinstance(done, bool):
        raise ConfigError(
            f"{problem}: settled and in_doubt must be whole numbers >= 0, done true or false"
        )
    return TaskState(settled, in_doubt, done)


def _json_name(kind: type) -> str:
    return {str: "string", dict: "object", list: "array", bool: "boolean"}.get(kind, kind.__name__)
