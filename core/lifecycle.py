"""Abort unless committed: the host-owned lifetime of one output task.

A plugin author cannot forget cleanup: the host wraps every :class:`PageOutput` in
:class:`TaskScope`. Leaving the block without a commit calls ``abort()``; ``close()`` is
always called; an error inside ``abort`` or ``close`` is attached to the original error as a
note, never replacing it.
"""

from __future__ import annotations

from types import TracebackType

from arrowbulk.spi import PageOutput, TaskReport


class TaskScope:
    """``with TaskScope(page) as scope: ...; scope.commit()``."""

    def __init__(self, page: PageOutput) -> None:
        self.page = page
        self.report: TaskReport | None = None
        self.partial: TaskReport | None = None

    def __enter__(self) -> TaskScope:
        return self

    def commit(self) -> TaskReport:
        report = self.page.commit()
        if not isinstance(report, TaskReport):
            raise TypeError(f"{type(self.page).__name__}.commit() must return a TaskReport")
        self.report = report
        return report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.report is None:
                self._abort(exc)
        finally:
            self._close(exc)

    def _abort(self, exc: BaseException | None) -> None:
        try:
            self.partial = self.page.abort()
        except Exception as abort_error:
            if exc is None:
                raise
            exc.add_note(f"abort() then failed too: {type(abort_error).__name__}: {abort_error}")

    def _close(self, exc: BaseException | None) -> None:
        try:
            self.page.close()
        except Exception as close_error:
            if exc is None:
                raise
            exc.add_note(f"close() then failed too: {type(close_error).__name__}: {close_error}")
