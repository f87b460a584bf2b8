"""The insider output's task: its config resolved into typed, checked settings.

Keys and defaults follow Treasure Data's Insider connector (see the seed page); the further
keys (endpoint, timeouts, retries, batch limits, rate limits, reject file, retention) have
safe defaults and are bounded by ``schemas/insider/output.json``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from arrowbulk import ConfigError, RunContext, Secret, checked_secret
from arrowbulk.plugins.insider.normalize import Settings
from arrowbulk.plugins.insider.operations import DEFAULT_RATES, Operation, Takes

API_KEY_ENV = "INSIDER_API_KEY"
ENDPOINT_ENV = "INSIDER_ENDPOINT"
DEFAULT_ENDPOINT = "https://unification.useinsider.com"


def operation_of(config: Mapping[str, Any]) -> Operation:
    mode = config["export_mode"]
    if mode == "USER_EVENTS":
        return Operation.EVENTS
    if mode == "USER_AUDIENCES":
        return Operation[f"AUDIENCE_{config['audience_operation']}"]
    operation = config["attribute_operation"]
    if operation == "DELET_ATTRIBUTES":  # the TD page's own spelling
        operation = "DELETE_ATTRIBUTES"
    return Operation[operation]


@dataclass(frozen=True)
class InsiderTask:
    """Everything a task of the insider output needs, resolved once per job."""

    operation: Operation
    api_key: Secret = field(repr=False)
    partner_name: str
    endpoint: str
    custom_identifiers: tuple[str, ...]
    skip_hook: bool
    skip_invalid_records: bool
    normalize: Settings
    #: on_invalid_value: drop_value (send the user without the failing attributes)
    drop_invalid_values: bool
    #: only_changed: the fingerprint store, else None
    fingerprint_file: Path | None
    removed_file: Path | None
    error_callback_endpoint: str | None
    connect_timeout: float
    read_timeout: float
    request_deadline: float
    max_response_bytes: int
    ca_file: Path | None
    max_retries: int
    retry_budget: int
    backoff_base: float
    backoff_max: float
    max_records: int
    max_bytes: int
    max_wait: float
    max_in_flight: int
    max_bytes_in_flight: int
    rate_per_minute: int
    reject_file: Path
    retention_days: Mapping[str, int]
    run_id: str


def resolve(
    config: Mapping[str, Any], context: RunContext, environ: Mapping[str, str] | None = None
) -> InsiderTask:
    """Turn a validated ``out:`` section into an :class:`InsiderTask`."""
    env = os.environ if environ is None else environ
    api_key = config.get("api_key")
    if api_key is None and env.get(API_KEY_ENV):
        api_key = Secret(checked_secret(API_KEY_ENV, env[API_KEY_ENV]))
    if not isinstance(api_key, Secret):
        raise ConfigError(f"out.api_key: required; set it, or export {API_KEY_ENV}")
    if not api_key.reveal().isascii():
        # It travels in the X-REQUEST-TOKEN header, which carries ASCII only.
        raise ConfigError(
            "out.api_key: holds a non-ASCII character (value hidden, it is a secret); Insider's "
            "keys are ASCII: check how the key was copied"
        )
    endpoint = (config.get("endpoint") or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    _check_transport(endpoint, config["allow_insecure_http"])
    fields = config["custom_identifier_fields"]
    custom = fields if isinstance(fields, list) else [f for f in fields.split(",") if f]
    operation = operation_of(config)
    limits = {**DEFAULT_RATES, **config.get("rate_limits", {})}
    reject = config.get("reject_file") or f"insider-rejects-{context.run_id}.jsonl"
    if config["backoff_base_seconds"] > config["backoff_max_seconds"]:
        raise ConfigError("out.backoff_base_seconds: must not exceed out.backoff_max_seconds")
    return InsiderTask(
        operation=operation,
        api_key=api_key,
        partner_name=config["partner_name"].lower(),
        endpoint=endpoint,
        custom_identifiers=tuple(dict.fromkeys(custom)),
        skip_hook=not config["trigger_data_stream"],
        skip_invalid_records=config["skip_invalid_records"],
        normalize=Settings.of(config["normalize"]),
        drop_invalid_values=config["on_invalid_value"] == "drop_value",
        fingerprint_file=_fingerprint_file(config, operation, context),
        removed_file=context.resolve(config["removed_file"]) if "removed_file" in config else None,
        error_callback_endpoint=config.get("error_callback_endpoint"),
        connect_timeout=float(config["connect_timeout"]),
        read_timeout=float(config["read_timeout"]),
        request_deadline=float(config["request_deadline"]),
        max_response_bytes=config["max_response_bytes"],
        ca_file=_ca_file(config.get("ca_file"), context),
        max_retries=config["max_retries"],
        retry_budget=config["retry_budget"],
        backoff_base=float(config["backoff_base_seconds"]),
        backoff_max=float(config["backoff_max_seconds"]),
        max_records=1 if operation.spec.one_user_per_request else config["max_records_per_request"],
        max_bytes=config["max_request_bytes"],
        max_wait=float(config["max_batch_wait_seconds"]),
        max_in_flight=config["max_requests_in_flight"],
        max_bytes_in_flight=config["max_bytes_in_flight"],
        rate_per_minute=limits[operation.spec.family],
        reject_file=context.resolve(reject),
        retention_days=dict(config.get("event_retention_days", {})),
        run_id=context.run_id,
    )


def _fingerprint_file(
    config: Mapping[str, Any], operation: Operation, context: RunContext
) -> Path | None:
    if not config["only_changed"]:
        for key in ("fingerprint_file", "removed_file"):
            if key in config:
                raise ConfigError(f"out.{key}: set only with only_changed: true")
        return None
    if operation.spec.takes not in {Takes.ATTRIBUTES, Takes.ARRAYS}:
        raise ConfigError(
            f"out.only_changed: {operation.value} does not send users' attributes; only_changed "
            "is for USER_ATTRIBUTES with UPSERT or REPLACE_ATTRIBUTES (events have no state to "
            "compare: export them incrementally with in.incremental and -c)"
        )
    name = config.get("fingerprint_file") or (
        f"insider-fingerprints-{config['partner_name'].lower()}-"
        f"{operation.value.replace('/', '-').lower()}.parquet"
    )
    return context.resolve(name)


def _ca_file(name: str | None, context: RunContext) -> Path | None:
    if name is None:
        return None
    path = context.resolve(name)
    if not path.is_file():
        raise ConfigError(f"out.ca_file: {name} does not exist (looked for {path})")
    return path


def _check_transport(endpoint: str, allow_insecure: bool) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"out.endpoint (or ${ENDPOINT_ENV}): {endpoint!r} is not an http(s) URL")
    if parts.scheme == "https" or allow_insecure:
        return
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"out.endpoint: plain http:// to {host} would send the API key unencrypted; "
            "use https://, or set allow_insecure_http: true if you really mean it"
        )
