"""Delivering requests: bounded in flight, answers mapped back to source rows.

One :class:`Delivery` serves a whole job: one connection pool, one rate limiter per endpoint
family, one retry budget, ``max_requests_in_flight`` requests at a time across all tasks
(a task that gets ahead waits: backpressure, so memory stays bounded). The first fatal error
(credentials refused, retries spent, an invalid record when invalid records are not skipped)
stops every task; whatever was not acknowledged is reported as not sent.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from arrowbulk import ArrowbulkError, JobError, RecordError, RejectWriter, Reporter
from arrowbulk.plugins.insider.batching import Request, RequestBuilder
from arrowbulk.plugins.insider.client import Answer, InsiderClient, RateLimiter, RetryBudget
from arrowbulk.plugins.insider.config import InsiderTask
from arrowbulk.plugins.insider.window import AdaptiveWindow

log = logging.getLogger(__name__)

_USER_KEY = re.compile(r"^users\.(\d+)(?:\.(.*))?$")


@dataclass
class Tally:
    """One task's account of what the destination did with its records."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    records_sent: int = 0  # records in requests that were answered (a split counts again)
    retries: int = 0
    splits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count


#: Called for each rejected source row: (row, rule, message, user JSON, attempt).
OnReject = Callable[[int, str, str, bytes, int], None]


class Delivery:
    def __init__(
        self,
        task: InsiderTask,
        rejects: RejectWriter,
        reporter: Reporter | None = None,
        share: Callable[[], float] | None = None,
    ) -> None:
        self.task = task
        self.rejects = rejects
        self.reporter = reporter or Reporter()
        self.stop = threading.Event()
        self.budget = RetryBudget(task.retry_budget)
        limiter = RateLimiter(task.rate_per_minute, share)
        self.client = InsiderClient(task, limiter, self.budget, self.stop)
        self.window = AdaptiveWindow(task.max_in_flight, task.max_bytes_in_flight)
        self._pool = ThreadPoolExecutor(task.max_in_flight, thread_name_prefix="arrowbulk-insider")
        self._fatal: ArrowbulkError | None = None
        self._fatal_lock = threading.Lock()
        #: Told the error that stops the job (the host's cancellation), once.
        self.on_fatal: Callable[[ArrowbulkError], object] | None = None

    def __repr__(self) -> str:
        return f"Delivery({self.client!r})"

    @property
    def fatal(self) -> ArrowbulkError | None:
        return self._fatal

    def fail(self, error: ArrowbulkError) -> None:
        """Record the error that stops the job; the first one wins."""
        with self._fatal_lock:
            if self._fatal is not None:
                return
            self._fatal = error
            self.stop.set()
        if self.on_fatal is not None:
            self.on_fatal(error)

    def raise_if_failed(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def submit(
        self,
        request: Request,
        builder: RequestBuilder,
        tally: Tally,
        on_reject: OnReject,
        on_start: Callable[[], None] | None = None,
    ) -> Future[bool]:
        """Send ``request`` on a worker thread; block while the in-flight window is full.

        ``on_start`` runs once a slot is free, just before the request goes out (to record it
        as possibly delivered, for the resume's bound on duplicates)."""
        # The rate limit's token first, in the task's thread: a request waiting for its turn
        # holds no slot of the window, and the task builds no further request meanwhile (with
        # slots taken first, a full window of bodies, up to 64 MB, waited in memory).
        self.client.limiter.acquire(self.stop)
        # Then a free slot, but not past a stop: a stopping job starts nothing new.
        size = len(request.body)
        while not self.window.acquire(size, timeout=0.05):
            if self.stop.is_set():
                self.raise_if_failed()
                raise JobError("the job is stopping")
        if self.stop.is_set():
            self.window.release(size)
            self.raise_if_failed()
            raise JobError("the job is stopping")
        try:
            if on_start is not None:
                on_start()
            return self._pool.submit(self._deliver_in_slot, request, builder, tally, on_reject)
        except BaseException:
            self.window.release(size)
            raise

    def waiting_on(self) -> str:
        """What sending waits on now, for the progress line ("" for nothing)."""
        parts = []
        if self.client.retrying:
            parts.append(f"{self.client.retrying} request(s) before a retry")
        if self.client.limiter.waiting:
            parts.append(f"the rate limit ({self.client.limiter.rate * 60:,.0f}/min)")
        return ", ".join(parts)

    def close(self) -> None:
        self.stop.set()
        # Pages waited for their answers (an aborted one only until the shutdown deadline): a
        # request still out past it must not hold the job's end.
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _deliver_in_slot(
        self, request: Request, builder: RequestBuilder, tally: Tally, on_reject: OnReject
    ) -> bool:
        """Deliver (its token taken in ``submit``); return whether every record of the
        request is settled (accepted or rejected)."""
        try:
            self._deliver(request, builder, tally, on_reject, paced=True)
            self.reporter.acknowledge(request.record_count)
            return True
        except ArrowbulkError as error:
            self.fail(error)
        except Exception as error:  # a bug must stop the job, not vanish in a worker thread
            log.exception("delivery failed")
            self.fail(JobError(f"internal error while sending: {error!r}"))
        finally:
            self.window.release(len(request.body))
        return False

    def _deliver(
        self,
        request: Request,
        builder: RequestBuilder,
        tally: Tally,
        on_reject: OnReject,
        paced: bool = False,
    ) -> None:
        def count_retry() -> None:
            with tally.lock:
                tally.retries += 1

        answer = self.client.send(
            request.body,
            check=lambda answer: answer_problem(answer.data, request.user_count),
            on_retry=count_retry,
            on_attempt=self.window.observe,
            paced=paced,
        )
        with tally.lock:
            tally.requests += 1
            tally.records_sent += request.record_count
        if answer.status == 200:
            self._settle(request, answer, tally, on_reject)
        elif answer.status in {400, 413} and request.user_count > 1:
            # Too large, or refused as a whole for what may be one bad user: halve and resend,
            # down to single users, whose refusal is then a rejection with the server's reason.
            with tally.lock:
                tally.splits += 1
            middle = request.user_count // 2
            for half in (list(range(middle)), list(range(middle, request.user_count))):
                self._deliver(request.subset(half, builder), builder, tally, on_reject)
        else:
            rule = f"server: HTTP {answer.status}"
            self._reject_users(
                request,
                range(request.user_count),
                rule,
                answer.message,
                answer.attempts,
                tally,
                on_reject,
            )

    def _settle(self, request: Request, answer: Answer, tally: Tally, on_reject: OnReject) -> None:
        failed = failed_users(answer.data, request.user_count)
        if failed:
            for index, (rule, message) in failed.items():
                self._reject_users(
                    request, [index], rule, message, answer.attempts, tally, on_reject
                )
        accepted = request.record_count - sum(len(request.rows_of(i)) for i in failed)
        with tally.lock:
            tally.accepted += accepted

    def _reject_users(
        self,
        request: Request,
        indexes: range | list[int],
        rule: str,
        message: str,
        attempt: int,
        tally: Tally,
        on_reject: OnReject,
    ) -> None:
        for index in indexes:
            rows = request.rows_of(index)
            for row in rows:  # written first: a row that cannot be written stays unsent
                on_reject(row, rule, message, request.user_text(index), attempt)
            with tally.lock:
                tally.reject(rule, len(rows))
        if not self.task.skip_invalid_records:
            first = request.rows_of(indexes[0])[0]
            self.fail(
                RecordError(
                    f"row {first}: Insider refused the record ({message}); the job stops because "
                    "skip_invalid_records is false (set it to true to skip such records)"
                )
            )


def answer_problem(data: object, user_count: int) -> str | None:
    """Why a 200's body is not a clean, fully mappable answer of Insider; None when it is.

    Documented: ``{"data": {"successful": {"count": n} or {}, "fail": {} or {"count": m,
    "errors": {"users.<i>...": [...]}}}}``. Every failure must name a user of the request, and
    the successes and failures must add up to the users sent; otherwise nobody can say which
    records Insider took, so none counts as accepted (the request is retried, then unsent).
    """
    body = data.get("data") if isinstance(data, dict) else None
    if not isinstance(body, dict):
        return "an answer that is not Insider's (no data object)"
    successful, fail = body.get("successful"), body.get("fail")
    if not isinstance(successful, dict) or not isinstance(fail, dict):
        return "an answer that is not Insider's (data.successful or data.fail missing)"
    ok = successful.get("count", 0)
    if not _is_count(ok):
        return f"an unreadable data.successful.count ({ok!r})"
    failed = 0
    if fail:
        errors, count = fail.get("errors"), fail.get("count")
        if not isinstance(errors, dict) or not errors or not isinstance(count, int) or count < 0:
            return "failures that name no users (data.fail without errors)"
        users = set()
        for key in errors:
            match = _USER_KEY.match(str(key))
            if not match or int(match.group(1)) >= user_count:
                return f"a failure that maps to no user of the request ({_short(str(key))})"
            users.add(int(match.group(1)))
        if count > len(errors):
            return f"{count} failures of which only {len(errors)} name a user"
        failed = len(users)
    if ok + failed != user_count:
        return f"{ok} successes and {failed} failed users for the {user_count} users sent"
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failed_users(data: object, user_count: int) -> dict[int, tuple[str, str]]:
    """Map ``data.fail.errors`` keys ``users.<i>...`` to user index -> (rule, message).

    Called on answers :func:`answer_problem` passed, so every key maps to a user.
    """
    if not isinstance(data, dict):
        return {}
    fail = (data.get("data") or {}).get("fail") if isinstance(data.get("data"), dict) else None
    errors = fail.get("errors") if isinstance(fail, dict) else None
    if not isinstance(errors, dict):
        return {}
    failed: dict[int, tuple[str, str]] = {}
    for key, messages in errors.items():
        match = _USER_KEY.match(str(key))
        if not match or int(match.group(1)) >= user_count:
            continue
        text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
        index = int(match.group(1))
        if index not in failed:
            failed[index] = (f"server: {match.group(2) or 'user'}", text)
    return failed
