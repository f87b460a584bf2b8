"""HTTP to Insider over urllib3: auth headers, TLS verification, retries, rate limits.

Every response and transport error is classified once, here:

- retried with capped exponential backoff and full jitter, honouring ``Retry-After``:
  429, 500, 502, 503, 504, 520-530 (gateway errors), timeouts, resets, dropped connections;
- returned to the caller as an answer: 200 (maybe with per-user failures), 400, 404 and the
  other 4xx (never retried; the caller splits, bisects or rejects);
- raised as :class:`AuthError`, stopping the job at once: 401, 403, and 400 "Partner is invalid".

Each request has ``max_retries``; the job has ``retry_budget`` retries in all.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import urllib3

from arrowbulk.errors import AuthError, JobError
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


class RateLimiter:
    """A token bucket shared by all threads: ``per_minute`` requests, bursts of one second."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                wait = (1.0 - self.tokens) / self.rate
            if stop.wait(wait):
                return


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
        self.url = task.endpoint + task.operation.path
        self.limiter, self.budget, self.stop = limiter, budget, stop
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=task.max_in_flight,
            block=False,
            retries=False,  # retries are ours: they need the classification above
            timeout=urllib3.Timeout(connect=task.connect_timeout, read=task.read_timeout),
            cert_reqs="CERT_REQUIRED",
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

    def send(self, body: bytes) -> Answer:
        """Send one body, retrying what may succeed later; raise AuthError / JobError to stop."""
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire(self.stop)
            if self.stop.is_set():
                raise JobError("the job is stopping; request not sent")
            try:
                response = self.pool.request(
                    self.task.operation.method,
                    self.url,
                    body=body,
                    headers=self._headers,
                    preload_content=True,
                )
            except urllib3.exceptions.HTTPError as error:
                problem, retry_after = f"{type(error).__name__}: {_short(str(error))}", None
            else:
                answer = _answer(response, attempt)
                if answer.status not in RETRY_STATUSES:
                    return self._checked(answer)
                problem, retry_after = (
                    f"HTTP {answer.status} {_short(answer.message)}",
                    _retry_after(response),
                )
            self._wait_before_retry(attempt, problem, retry_after)

    def _checked(self, answer: Answer) -> Answer:
        if answer.status in {401, 403} or (
            answer.status == 400 and "partner" in answer.message.lower()
        ):
            raise AuthError(
                f"Insider refused the credentials (HTTP {answer.status}: {_short(answer.message)}); "
                "check out.api_key (a UCD API key) and out.partner_name; nothing more was sent"
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
        if self.stop.wait(delay):
            raise JobError(f"the job is stopping; not retrying ({problem})")


def _answer(response: urllib3.BaseHTTPResponse, attempt: int) -> Answer:
    raw = response.data or b""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    return Answer(response.status, data, raw[:500].decode("utf-8", "replace"), attempt)


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = response.headers.get("Retry-After")
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
