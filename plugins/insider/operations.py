"""Every operation the insider output performs, and all it needs to know about each: one table.

An operation is what one run does (``export_mode`` with its attribute or audience operation).
Its row in :data:`OPERATIONS` says which endpoint it calls (path, method), under which
rate-limit family and default limit, how many users one request carries and in what envelope,
which columns it takes and how their values are checked, and how one user is laid out.
Modules ask the table (``operation.spec``) instead of branching on operation names: adding an
endpoint is one row here plus its tests (and a layout, if its body is new).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Takes(enum.Enum):
    """Which columns besides identifiers an operation takes, and how their values count."""

    ATTRIBUTES = "attributes"  # any attributes, at least one; checked against the spec
    ARRAYS = "arrays"  # array attributes only (they replace the stored arrays)
    MARKERS = "markers"  # a non-null value marks a deletion; its value is not checked
    NOTHING = "nothing"  # identifiers only
    EVENTS = "events"  # event_name, timestamp and event parameters; one row is one event
    AUDIENCE = "audience"  # td_audience_id and td_audience_name, arrays paired by position


class Body(enum.Enum):
    """How one user is laid out in a request (see :mod:`layout`)."""

    ATTRIBUTES = "attributes"  # {"identifiers": ..., "attributes": {...}}
    EVENTS = "events"  # {"identifiers": ..., "events": [{...}, ...]}
    IDENTIFIERS = "identifiers"  # {"identifiers": ...}
    DELETIONS = "deletions"  # {"identifiers": ..., "whole": [...], "partial": {...}, "custom": ...}
    AUDIENCE_REMOVAL = "audience removal"  # {"identifiers": ..., "custom": {"partial": {...}}}


class Envelope(enum.Enum):
    """What wraps the users of one request."""

    UPSERT = "upsert"  # {"users": [...], "skip_hook": ..., "error_callback_endpoint": ...}
    USERS = "users"  # {"users": [...]}
    SINGLE = "single"  # one user object per request, no envelope


@dataclass(frozen=True)
class OperationSpec:
    path: str
    method: str
    family: str  # the rate-limit family (out.rate_limits keys)
    default_rate: int  # requests a minute Insider allows the family, per account
    envelope: Envelope
    takes: Takes
    body: Body
    not_append: bool = False  # the user's arrays are replaced, not appended to

    @property
    def one_user_per_request(self) -> bool:
        return self.envelope is Envelope.SINGLE


class Operation(enum.Enum):
    """What one run does, from export_mode and the attribute / audience operation."""

    UPSERT = "USER_ATTRIBUTES/UPSERT"
    REPLACE_ATTRIBUTES = "USER_ATTRIBUTES/REPLACE_ATTRIBUTES"
    DELETE_ATTRIBUTES = "USER_ATTRIBUTES/DELETE_ATTRIBUTES"
    DELETE_IDENTIFIERS = "USER_ATTRIBUTES/DELETE_IDENTIFIERS"
    DELETE_PII = "USER_ATTRIBUTES/DELETE_PII"
    EVENTS = "USER_EVENTS"
    AUDIENCE_APPEND = "USER_AUDIENCES/APPEND"
    AUDIENCE_REPLACE = "USER_AUDIENCES/REPLACE"
    AUDIENCE_REMOVE = "USER_AUDIENCES/REMOVE"

    @property
    def spec(self) -> OperationSpec:
        return OPERATIONS[self]


_UPSERT = "/api/user/v1/upsert"
_ATTRIBUTE_DELETE = "/api/user/v1/attribute/delete"

#: The facts of ../shared/insider-api.md and the seed page, one row per operation.
OPERATIONS: dict[Operation, OperationSpec] = {
    Operation.UPSERT: OperationSpec(
        _UPSERT, "POST", "upsert", 25_000, Envelope.UPSERT, Takes.ATTRIBUTES, Body.ATTRIBUTES
    ),
    Operation.REPLACE_ATTRIBUTES: OperationSpec(
        _UPSERT,
        "POST",
        "upsert",
        25_000,
        Envelope.UPSERT,
        Takes.ARRAYS,
        Body.ATTRIBUTES,
        not_append=True,
    ),
    Operation.DELETE_ATTRIBUTES: OperationSpec(
        _ATTRIBUTE_DELETE, "POST", "upsert", 25_000, Envelope.USERS, Takes.MARKERS, Body.DELETIONS
    ),
    Operation.DELETE_IDENTIFIERS: OperationSpec(
        "/api/user/v1/identity",
        "DELETE",
        "identity_delete",
        1_000,
        Envelope.SINGLE,
        Takes.NOTHING,
        Body.IDENTIFIERS,
    ),
    Operation.DELETE_PII: OperationSpec(
        "/api/user/v1/anonymize",
        "POST",
        "anonymize",
        500,
        Envelope.SINGLE,
        Takes.NOTHING,
        Body.IDENTIFIERS,
    ),
    Operation.EVENTS: OperationSpec(
        _UPSERT, "POST", "upsert", 25_000, Envelope.UPSERT, Takes.EVENTS, Body.EVENTS
    ),
    Operation.AUDIENCE_APPEND: OperationSpec(
        _UPSERT, "POST", "upsert", 25_000, Envelope.UPSERT, Takes.AUDIENCE, Body.ATTRIBUTES
    ),
    Operation.AUDIENCE_REPLACE: OperationSpec(
        _UPSERT,
        "POST",
        "upsert",
        25_000,
        Envelope.UPSERT,
        Takes.AUDIENCE,
        Body.ATTRIBUTES,
        not_append=True,
    ),
    Operation.AUDIENCE_REMOVE: OperationSpec(
        _ATTRIBUTE_DELETE,
        "POST",
        "upsert",
        25_000,
        Envelope.USERS,
        Takes.AUDIENCE,
        Body.AUDIENCE_REMOVAL,
    ),
}

#: Default requests a minute per rate-limit family (the account's limits).
DEFAULT_RATES = {spec.family: spec.default_rate for spec in OPERATIONS.values()}
