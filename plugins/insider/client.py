"""HTTP to Insider over urllib3: auth headers, TLS verification, retries, rate limits.

Every response and transport error is classified once, here:

- retried with capped exponential backoff and full jitter, honouring ``Retry-After``:
  429, 408, 500, 502, 503, 504, 520-530 (gateway errors), timeouts, resets, dropped
  connections, an attempt past ``request_deadline``, an answer longer than
  ``max_response_bytes``, and a 200 whose body is not Insider's documented answer (the caller's
  ``check``): only a clean answer settles records;
- returned to the caller as an answer: 200, 400, and the other 4xx the caller can map to rows
  (a 404 "no such user" of a single-user call);
- raised, stopping the job at once (nothing more is sent): :class:`AuthError` for 401, 403 and
  400 "Partner is invalid"; :class:`EndpointError` for a redirect (never followed: the key
  would travel to another address), a 404 that is not "no such user", and a TLS certificate
  that does not verify (retrying cannot fix configuration).

Each request has ``max_retries``; the job has ``retry_budget`` retries in all.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import urllib3

from arrowbulk import AuthError, JobError
from arrowbulk.plugins.insider.config import InsiderTask

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, *range(520, 531)})
_MAX_RETRY_AFTER = 600.0


@dataclass(frozen=True)
class Answer:
    """The final response to one request (after any retries)."""

    status: int
    data: Any  # the parsed JSON body, or None
    text: str  # the body as text, cut short, for messages
    attempts: int

    @property
    def message(self) -> str:
        if isinstance(self.data, dict):
            for key in ("error", "message"):
                if isinstance(self.data.get(key), str):
                    return str(self.data[key])
        return self.text or f"HTTP {self.status}"


class EndpointError(JobError):
    """The endpoint is wrong or untrusted (a redirect, no such path, a certificate that does not
    verify): configuration, so retrying cannot help; the job stops."""


#: Checks a 200 answer; returns why it is not a clean answer, or None when it is.
AnswerCheck = Callable[[Answer], str | None]


#: How often a task on a cluster asks for its share of the job's rate limits.
SHARE_SECONDS = 0.5


class RateLimiter:
    """A token bucket shared by all threads, pacing requests to ``per_minute``, that backs off
    when the API says it is over its quota.

    Bursts are a tenth of a second's worth (at least one request), so a second never holds
    much more than the rate. On a 429 the rate drops to 90% of what the API accepted in the
    last second (at most once a second: one window's 429s come together); each second without
    one it climbs back by 2% (at least one request a minute), up to ``per_minute``. So a quota
    below the configured limit is found and held without storms of 429s.
    """

    def __init__(self, per_minute: int, share: Callable[[], float] | None = None) -> None:
        # On an executor's cluster each task gets a share of the job's limit (``share``,
        # asked again every SHARE_SECONDS): together the tasks stay within it.
        self.per_second = per_minute / 60.0
        self.share_of = share
        self.share = share() if share is not None else 1.0
        self.next_share = time.monotonic() + SHARE_SECONDS
        self.ceiling = self.per_second * self.share
        self.rate = self.ceiling
        # A task on a cluster starts with an empty bucket: tasks come and go, and a full one
        # each would let every new task burst past the job's limit.
        self.tokens = self._capacity() if share is None else 0.0
        self.updated = self.last_cut = time.monotonic()
        self.accepted: deque[float] = deque()  # times of answers other than 429, last second
        self.lock = threading.Lock()
        self.waiting = 0  # threads waiting for a token now

    def _capacity(self) -> float:
        return max(1.0, self.rate / 10)

    def acquire(self, stop: threading.Event) -> None:
        self._follow_share()
        while True:
            with self.lock:
                now = time.monotonic()
                if self.rate < self.ceiling and now - self.last_cut >= 1.0:
                    self.rate = min(self.ceiling, self.rate * 1.02 + 1 / 60)
                    self.last_cut = now
                self.tokens = min(self._capacity(), self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                wait = (1.0 - self.tokens) / self.rate
                self.waiting += 1
            try:
                if stop.wait(wait):
                    return
            finally:
                with self.lock:
                    self.waiting -= 1

    def _follow_share(self) -> None:
        if self.share_of is None or time.monotonic() < self.next_share:
            return
        share = self.share_of()  # outside the lock: it may ask the cluster
        with self.lock:
            self.next_share = time.monotonic() + SHARE_SECONDS
            if share != self.share:
                self.rate = min(self.per_second * share, self.rate * share / self.share)
                self.share, self.ceiling = share, self.per_second * share
                self.tokens = min(self.tokens, self._capacity())

    def answered(self, over_quota: bool) -> None:
        """An answer came: a 429 (send slower than the API just accepted) or any other."""
        with self.lock:
            now = time.monotonic()
            while self.accepted and now - self.accepted[0] > 1.0:
                self.accepted.popleft()
            if not over_quota:
                self.accepted.append(now)
                return
            if now - self.last_cut < 1.0:
                return
            self.rate = max(1 / 60, min(self.rate, float(len(self.accepted))) * 0.9)
            self.tokens = min(self.tokens, self._capacity())
            self.last_cut = now


class RetryBudget:
    """Retries left for the whole job, shared by all threads."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.used = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            self.used += 1
            return True


class InsiderClient:
    def __init__(
        self, task: InsiderTask, limiter: RateLimiter, budget: RetryBudget, stop: threading.Event
    ) -> None:
        self.task = task
        self.url = task.endpoint + task.operation.spec.path
        self.limiter, self.budget, self.stop = limiter, budget, stop
        self.retrying = 0  # requests sleeping before their next attempt
        self._retrying_lock = threading.Lock()
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=task.max_in_flight,  # the window's ceiling: one connection per request
            block=False,
            retries=False,  # retries are ours: they need the classification above
            timeout=urllib3.Timeout(
                connect=task.connect_timeout,
                read=task.read_timeout,
                total=task.request_deadline,
            ),
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(task.ca_file) if task.ca_file else None,
        )
        self._headers = {
            "X-PARTNER-NAME": task.partner_name,
            "X-REQUEST-TOKEN": task.api_key.reveal(),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "arrowbulk-insider",
        }

    def __repr__(self) -> str:
        return f"InsiderClient({self.url!r})"

    def close(self) -> None:
        self.pool.clear()

    def send(
        self,
        body: bytes,
        check: AnswerCheck | None = None,
        on_retry: Callable[[], None] | None = None,
        on_attempt: Callable[[float, bool], None] | None = None,
        paced: bool = False,
    ) -> Answer:
        """Send one body, retrying what may succeed later; raise AuthError / EndpointError /
        JobError to stop. ``check`` vets a 200; ``on_retry`` counts each retry;
        ``on_attempt(seconds, overloaded)`` hears how each attempt went (the adaptive window);
        ``paced``: the caller took the first attempt's rate-limit token already."""
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 or not paced:
                self.limiter.acquire(self.stop)
            if self.stop.is_set():
                raise JobError("the job is stopping; request not sent")
            retry_after: float | None = None
            started = time.monotonic()
            try:
                answer, headers = self._attempt(body, attempt)
            except urllib3.exceptions.SSLError as error:
                raise EndpointError(
                    f"out.endpoint {self.task.endpoint}: TLS failed ({_short(str(error))}); if the "
                    "server's certificate comes from a private CA, set out.ca_file to its PEM "
                    "file (or export SSL_CERT_FILE); nothing more was sent"
                ) from None
            except (urllib3.exceptions.HTTPError, _Unreadable) as error:
                problem = f"{type(error).__name__}: {_short(str(error))}"
                if on_attempt is not None:
                    on_attempt(time.monotonic() - started, True)
            else:
                if on_attempt is not None:
                    on_attempt(time.monotonic() - started, answer.status in RETRY_STATUSES)
                self.limiter.answered(over_quota=answer.status == 429)
                if answer.status not in RETRY_STATUSES:
                    answer = self._checked(answer, headers)
                    problem_text = check(answer) if check and answer.status == 200 else None
                    if problem_text is None:
                        return answer
                    problem = f"HTTP 200 with {problem_text}"
                else:
                    problem = f"HTTP {answer.status} {_short(answer.message)}"
                    retry_after = _retry_after(headers)
            self._wait_before_retry(attempt, problem, retry_after)
            if on_retry is not None:
                on_retry()

    def _attempt(self, body: bytes, attempt: int) -> tuple[Answer, Any]:
        """One request; its answer read up to max_response_bytes, before request_deadline."""
        deadline = time.monotonic() + self.task.request_deadline
        response = self.pool.request(
            self.task.operation.spec.method,
            self.url,
            body=body,
            headers=self._headers,
            preload_content=False,
            redirect=False,
        )
        try:
            raw = _read_bounded(response, self.task.max_response_bytes, deadline)
        except BaseException:
            response.close()  # not drained: the rest may be endless
            raise
        response.release_conn()
        return _answer(response.status, raw, attempt), response.headers

    def _checked(self, answer: Answer, headers: Any) -> Answer:
        endpoint = f"{self.task.operation.spec.method} {self.url}"
        if answer.status in {401, 403} or (
            answer.status == 400 and "partner" in answer.message.lower()
        ):
            raise AuthError(
                f"Insider refused the credentials (HTTP {answer.status}: {_short(answer.message)}); "
                "check out.api_key (a UCD API key) and out.partner_name; nothing more was sent"
            )
        if 300 <= answer.status < 400:
            where = headers.get("Location") or "no Location given"
            raise EndpointError(
                f"out.endpoint: {endpoint} answered HTTP {answer.status} (a redirect to {_short(where)}); "
                "arrowbulk never follows redirects, since the key would travel with the request: "
                "set out.endpoint to the address that answers; nothing more was sent"
            )
        if answer.status == 404 and not (
            self.task.operation.spec.one_user_per_request
            and "no such user" in answer.message.lower()
        ):
            raise EndpointError(
                f"out.endpoint: {endpoint} answered HTTP 404 ({_short(answer.message)}); check "
                "out.endpoint (Insider's is https://unification.useinsider.com); nothing more was sent"
            )
        return answer

    def _wait_before_retry(self, attempt: int, problem: str, retry_after: float | None) -> None:
        if attempt > self.task.max_retries:
            raise JobError(
                f"gave up after {attempt} attempts (out.max_retries={self.task.max_retries}): {problem}"
            )
        if not self.budget.take():
            raise JobError(
                f"the job's retry budget (out.retry_budget={self.task.retry_budget}) is spent: {problem}"
            )
        cap = min(self.task.backoff_max, self.task.backoff_base * 2 ** (attempt - 1))
        delay = random.uniform(0, cap)  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
        with self._retrying_lock:
            self.retrying += 1
        try:
            if self.stop.wait(delay):
                raise JobError(f"the job is stopping; not retrying ({problem})")
        finally:
            with self._retrying_lock:
                self.retrying -= 1


class _Unreadable(Exception):
    """An answer too long, or too slow in all: the attempt failed, like a timeout."""


def _read_bounded(response: urllib3.BaseHTTPResponse, limit: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise _Unreadable("the answer did not arrive within out.request_deadline")
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _Unreadable(f"the answer is longer than out.max_response_bytes ({limit:,})")
        chunks.append(chunk)


def _answer(status: int, raw: bytes, attempt: int) -> Answer:
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    return Answer(status, data, raw[:500].decode("utf-8", "replace"), attempt)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
