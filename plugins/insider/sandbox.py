"""A local stand-in for Insider's user-data API, for tests, demos and fault drills.

It speaks the API of ``shared/insider-api.md``: the auth headers, the count and size limits,
per-user validation answered the way Insider answers (HTTP 200 with ``data.fail.errors``
keyed ``users.<i>...``), profile state with append / replace / delete semantics, and a
read-back of profiles. Faults are knobs: fail the first N requests (or a random share) with a
status, answer 429 with or without ``Retry-After``, delay answers, drop connections.
Loopback only.
"""

from __future__ import annotations

import copy
import json
import random
import re
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from arrowbulk import ConfigError

MAX_USERS = 1000
MAX_BODY = 5_000_000
EMAIL = re.compile(r"^.+@.+\..+$")
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
EVENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
PII = (
    "name",
    "surname",
    "email",
    "phone_number",
    "birthday",
    "gender",
    "age",
    "city",
    "country",
    "uuid",
)
DEFAULT_IDENTIFIERS = ("email", "phone_number", "uuid")


@dataclass
class Faults:
    """What to do wrong. Counters count down as requests arrive."""

    fail_first: int = 0  # answer the next N requests with fail_status
    fail_status: int = 500
    fail_rate: float = 0.0  # answer this share of requests with fail_status (seeded)
    rate_limit_first: int = 0  # answer the next N requests with 429
    retry_after: str | None = None  # the Retry-After header sent with those 429s
    drop_first: int = 0  # close the connection of the next N requests without answering
    delay_seconds: float = 0.0  # wait this long before every answer
    healthy_requests: int | None = None  # after this many requests, fail every one (an outage)
    max_per_second: float | None = None  # answer 429 to requests above this rate (a quota)
    seed: int = 0


@dataclass
class Profile:
    identifiers: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def identifier_keys(self) -> set[tuple[str, str]]:
        found = {(k, str(v)) for k, v in self.identifiers.items() if k != "custom"}
        found |= {("custom." + k, str(v)) for k, v in self.identifiers.get("custom", {}).items()}
        return found


class SandboxState:
    """Profiles and the request log; every method holds the lock."""

    def __init__(self, partner: str, api_key: str | None, faults: Faults) -> None:
        self.partner, self.api_key, self.faults = partner, api_key, faults
        self.random = random.Random(faults.seed)
        self.lock = threading.Lock()
        self.profiles: list[Profile] = []
        # identifier (key, value) -> the profile that had it: a lookup costs the same however
        # many profiles the sandbox holds. Entries may be stale after an identity delete, so a
        # hit is checked against the profile's current identifiers.
        self.index: dict[tuple[str, str], Profile] = {}
        self.log: list[dict[str, Any]] = []
        self.served = 0  # requests answered with a status (not dropped)
        self.concurrent = self.peak_concurrent = 0  # requests being handled now / at most
        self.arrivals: deque[float] = deque()  # arrival times within the last second
        self.down = False

    # -- lookups -------------------------------------------------------------------------
    def find(self, identifiers: dict[str, Any]) -> Profile | None:
        for key in sorted(Profile(identifiers=identifiers).identifier_keys()):
            profile = self.index.get(key)
            if profile is not None and key in profile.identifier_keys():
                return profile
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(p) for p in self.profiles]

    # -- operations ------------------------------------------------------------------------
    def upsert(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        users = body.get("users")
        if not isinstance(users, list) or not users:
            return 400, {"error": "users are required: bad request"}
        if len(users) > MAX_USERS:
            return 400, {"error": f"at most {MAX_USERS} users per request: bad request"}
        ok, errors = 0, {}
        for index, user in enumerate(users):
            problem = _check_user(user)
            if problem:
                key, message = problem
                errors[f"users.{index}.{key}"] = [message]
                continue
            self._apply_upsert(user)
            ok += 1
        return 200, _result(ok, errors)

    def _apply_upsert(self, user: dict[str, Any]) -> None:
        identifiers = user["identifiers"]
        profile = self.find(identifiers)
        if profile is None:
            profile = Profile()
            self.profiles.append(profile)
        for key, value in identifiers.items():  # upsert adds identifiers, never changes one
            if key == "custom":
                custom = profile.identifiers.setdefault("custom", {})
                for ckey, cvalue in value.items():
                    custom.setdefault(ckey, cvalue)
            else:
                profile.identifiers.setdefault(key, value)
        for key in profile.identifier_keys():
            holder = self.index.get(key)
            if holder is None or key not in holder.identifier_keys():
                self.index[key] = profile
        replace = bool(user.get("not_append"))
        attributes = user.get("attributes", {})
        _merge(profile.attributes, {k: v for k, v in attributes.items() if k != "custom"}, replace)
        if "custom" in attributes:
            _merge(profile.attributes.setdefault("custom", {}), attributes["custom"], replace)
        profile.events.extend(copy.deepcopy(user.get("events", [])))

    def delete_attributes(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        users = body.get("users")
        if not isinstance(users, list) or not users or len(users) > MAX_USERS:
            return 400, {"error": "1 to 1000 users are required: bad request"}
        ok, errors = 0, {}
        for index, user in enumerate(users):
            if not isinstance(user, dict) or not user.get("identifiers"):
                errors[f"users.{index}.identifiers"] = ["identifiers are required"]
                continue
            profile = self.find(user["identifiers"])
            if profile is not None:
                _delete(profile.attributes, user)
                if "custom" in user and "custom" in profile.attributes:
                    _delete(profile.attributes["custom"], user["custom"])
            ok += 1
        return 200, _result(ok, errors)

    def _one_user(
        self, body: dict[str, Any]
    ) -> tuple[Profile | None, tuple[int, dict[str, Any]] | None]:
        """The profile a single-user call names, or the answer Insider gives when it names none."""
        identifiers = body.get("identifiers")
        if not isinstance(identifiers, dict) or not identifiers:
            return None, (400, {"error": "identifiers are required: bad request"})
        profile = self.find(identifiers)
        if profile is None:
            return None, (404, {"error": "no such user for these identifiers: no data"})
        return profile, None

    def delete_identity(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        profile, refusal = self._one_user(body)
        if profile is None:
            assert refusal is not None
            return refusal
        identifiers = body["identifiers"]
        remaining = profile.identifier_keys() - Profile(identifiers=identifiers).identifier_keys()
        if not remaining:
            return 400, {"error": "the last identifier of a user cannot be deleted: bad request"}
        for key, value in identifiers.items():
            if key == "custom":
                for ckey in value:
                    profile.identifiers.get("custom", {}).pop(ckey, None)
            elif profile.identifiers.get(key) == value:
                profile.identifiers.pop(key)
        return 200, {"data": {"successful": {"count": 1}, "fail": {}}}

    def anonymize(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        profile, refusal = self._one_user(body)
        if profile is None:
            assert refusal is not None
            return refusal
        for key in PII:
            profile.attributes.pop(key, None)
            if key in DEFAULT_IDENTIFIERS:
                profile.identifiers.pop(key, None)
        return 200, {"data": {"successful": {"count": 1}, "fail": {}}}

    def read_profile(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        profile = self.find(body.get("identifiers") or {})
        if profile is None:
            return 404, {"error": "no such user for these identifiers: no data"}
        return 200, asdict(profile)


def _result(ok: int, errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "data": {
            "successful": {"count": ok} if ok else {},
            "fail": {"count": len(errors), "errors": errors} if errors else {},
        }
    }


def _check_user(user: Any) -> tuple[str, str] | None:
    """Insider's per-user checks: the key (after ``users.<i>.``) and message of the first failure."""
    if not isinstance(user, dict):
        return "*", "user must be an object"
    identifiers = user.get("identifiers")
    if not isinstance(identifiers, dict) or not identifiers:
        return "identifiers", "identifiers are required"
    if "email" in identifiers and not (
        isinstance(identifiers["email"], str) and EMAIL.match(identifiers["email"])
    ):
        return "identifiers.*.regexp(email)", f"user has an invalid email: {identifiers['email']}"
    if "phone_number" in identifiers and not (
        isinstance(identifiers["phone_number"], str) and PHONE.match(identifiers["phone_number"])
    ):
        return (
            "identifiers.*.regexp(phone_number)",
            f"user has an invalid phone number: {identifiers['phone_number']}",
        )
    if "uuid" in identifiers and not isinstance(identifiers["uuid"], str):
        return "identifiers.uuid.type", "uuid must be a string"
    if "attributes" not in user and "events" not in user:
        return "*", "a user needs attributes or events"
    for scope, values in _attribute_scopes(user.get("attributes", {})):
        for name, value in values.items():
            if not NAME.match(name):
                return f"attributes.{scope}{name}.name", f"invalid attribute name: {name}"
            problem = _value_problem(value)
            if problem:
                return f"attributes.{scope}{name}.type", f"{name}: {problem}"
    for position, event in enumerate(user.get("events", [])):
        if not isinstance(event, dict) or not EVENT_NAME.match(str(event.get("event_name", ""))):
            return f"events.{position}.event_name", "invalid event name"
        if not isinstance(event.get("timestamp"), str):
            return f"events.{position}.timestamp", "timestamp is required"
    return None


def _attribute_scopes(attributes: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    scopes = [("", {k: v for k, v in attributes.items() if k != "custom"})]
    if isinstance(attributes.get("custom"), dict):
        scopes.append(("custom.", attributes["custom"]))
    return scopes


def _value_problem(value: Any) -> str | None:
    if value is None:
        return "null is not a value"
    if isinstance(value, dict):
        return "objects are not allowed"
    if isinstance(value, list):
        kinds = {
            "bool"
            if isinstance(v, bool)
            else "number"
            if isinstance(v, int | float)
            else type(v).__name__
            for v in value
        }
        if kinds - {"str", "number"}:
            return "arrays may hold only strings or numbers"
        if len(kinds) > 1:
            return "mixed arrays are not allowed"
    return None


def _merge(target: dict[str, Any], values: dict[str, Any], replace: bool) -> None:
    for key, value in values.items():
        if isinstance(value, list) and not replace and isinstance(target.get(key), list):
            target[key] = target[key] + [v for v in value if v not in target[key]]
        else:
            target[key] = copy.deepcopy(value)


def _delete(target: dict[str, Any], spec: dict[str, Any]) -> None:
    for key in spec.get("whole", []):
        target.pop(key, None)
    for key, values in (spec.get("partial") or {}).items():
        if isinstance(target.get(key), list):
            target[key] = [v for v in target[key] if v not in values]


ROUTES = {
    ("POST", "/api/user/v1/upsert"): SandboxState.upsert,
    ("POST", "/api/user/v1/attribute/delete"): SandboxState.delete_attributes,
    ("DELETE", "/api/user/v1/identity"): SandboxState.delete_identity,
    ("POST", "/api/user/v1/anonymize"): SandboxState.anonymize,
    ("POST", "/api/user/v1/profile"): SandboxState.read_profile,
}


#: What the sandbox answers to GET besides Insider's API (insider-sandbox --help says so too).
INSPECTION = ("/_sandbox/profiles", "/_sandbox/events", "/_sandbox/requests", "/_sandbox/stats")


def _by_status(log: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in log:
        key = str(entry["status"])
        counts[key] = counts.get(key, 0) + 1
    return counts


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request log is in the state

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_sandbox/profiles":
            self._send(200, state.snapshot())
        elif self.path == "/_sandbox/events":
            events = [
                {"identifiers": profile["identifiers"], **event}
                for profile in state.snapshot()
                for event in profile["events"]
            ]
            self._send(200, events)
        elif self.path == "/_sandbox/requests":
            with state.lock:
                log = [dict(entry) for entry in state.log]
            self._send(200, log)
        elif self.path == "/_sandbox/stats":
            with state.lock:
                stats = {
                    "requests": len(state.log),
                    "answered": state.served,
                    "by_status": _by_status(state.log),
                    "peak_concurrent": state.peak_concurrent,
                    "profiles": len(state.profiles),
                }
            self._send(200, stats)
        else:
            self._send(404, {"error": f"not found; GET {', '.join(INSPECTION)}"})

    def _handle(self) -> None:
        state = self.server.state
        with state.lock:
            state.concurrent += 1
            state.peak_concurrent = max(state.peak_concurrent, state.concurrent)
        try:
            self._handle_one(state)
        finally:
            with state.lock:
                state.concurrent -= 1

    def _handle_one(self, state: SandboxState) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with state.lock:
            faults = state.faults
            entry = {
                "method": self.command,
                "path": self.path,
                "bytes": len(raw),
                "at": time.time(),
                "status": None,
            }
            state.log.append(entry)
            if state.down or faults.drop_first > 0:
                faults.drop_first = max(0, faults.drop_first - (0 if state.down else 1))
                entry["status"] = "dropped"
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            delay = faults.delay_seconds
        if delay:
            time.sleep(delay)
        status, payload, headers = self._answer(raw, entry)
        entry["status"] = status
        self._send(status, payload, headers)

    def _answer(self, raw: bytes, entry: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        with state.lock:
            faults = state.faults
            if faults.rate_limit_first > 0:
                faults.rate_limit_first -= 1
                headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
                return 429, {"error": "rejected: too many requests"}, headers
            served = state.served
            state.served += 1
            if faults.max_per_second is not None:
                now = time.monotonic()
                while state.arrivals and now - state.arrivals[0] > 1.0:
                    state.arrivals.popleft()
                if len(state.arrivals) >= faults.max_per_second:
                    return 429, {"error": "rejected: too many requests"}, {}
                state.arrivals.append(now)
            outage = faults.healthy_requests is not None and served >= faults.healthy_requests
            random_failure = bool(faults.fail_rate) and state.random.random() < faults.fail_rate
            if outage or faults.fail_first > 0 or random_failure:
                faults.fail_first = max(0, faults.fail_first - 1)
                return faults.fail_status, {"error": "sandbox fault"}, {}
        if self.headers.get("X-PARTNER-NAME") != state.partner:
            return 400, {"success": False, "message": "Partner is invalid."}, {}
        token = self.headers.get("X-REQUEST-TOKEN")
        if not token or (state.api_key is not None and token != state.api_key):
            return 403, {"success": False, "message": "Access Denied! Check your token."}, {}
        if len(raw) > MAX_BODY:
            return 400, {"error": f"request body is over {MAX_BODY} bytes: bad request"}, {}
        route = ROUTES.get((self.command, self.path))
        if route is None:
            return 404, {"error": "no such endpoint"}, {}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": "body is not JSON: bad request"}, {}
        if not isinstance(body, dict):
            return 400, {"error": "body must be an object: bad request"}, {}
        entry["body"] = body
        with state.lock:
            status, payload = route(state, body)
        return status, payload, {}

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(
            status,
            HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error",
        )
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Python's default listen backlog of 5 drops connections that a wide in-flight window
    # opens at once; each dropped SYN costs the client a 1 s retransmit.
    request_queue_size = 1024
    state: SandboxState

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are on purpose (faults) or the client's doing


class InsiderSandbox:
    """``with InsiderSandbox() as sandbox: ... sandbox.url ...``; serves on 127.0.0.1."""

    def __init__(
        self,
        port: int = 0,
        partner: str = "sandbox",
        api_key: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.state = SandboxState(partner, api_key, faults or Faults())
        try:
            self.server = _Server(("127.0.0.1", port), _Handler)
        except OSError as error:
            raise ConfigError(
                f"--port {port}: cannot listen on 127.0.0.1:{port} ({error.strerror}); "
                "choose another port, or leave --port out for any free one"
            ) from None
        self.server.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.log)

    def profiles(self) -> list[dict[str, Any]]:
        return self.state.snapshot()

    def set_faults(self, **changes: Any) -> None:
        with self.state.lock:
            for key, value in changes.items():
                setattr(self.state.faults, key, value)
            if "seed" in changes:
                self.state.random.seed(changes["seed"])

    def start(self) -> InsiderSandbox:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll
            name="insider-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def outage(self, seconds: float) -> None:
        """Stop answering (connections refused) for ``seconds``, then serve again, same port and state."""
        port = self.port
        with self.state.lock:
            self.state.down = True  # open keep-alive connections die too, as in a crash
        self.stop()
        time.sleep(seconds)
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.state = self.state
        with self.state.lock:
            self.state.down = False
        self.start()

    def __enter__(self) -> InsiderSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
