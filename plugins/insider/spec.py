"""Insider's default data spec, read from the JSON Schemas in ``schemas/insider/``.

Those schemas are the single source of truth: which attributes and event parameters are
default ones (and their types and formats), what a valid identifier is, which events are
default and how long Insider keeps them. This module only loads and indexes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from arrowbulk import load_schema

IDENTIFIER_NAMES = ("email", "phone_number", "uuid")
AUDIENCE_COLUMNS = ("td_audience_id", "td_audience_name")
COLUMN_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_CUSTOM_ATTRIBUTES = 255


@dataclass(frozen=True)
class Spec:
    identifiers: Mapping[str, Any]
    attributes: Mapping[str, Any]
    event: Mapping[str, Any]
    audience: Mapping[str, Any]
    events: Mapping[str, Any]

    def identifier_schema(self, name: str) -> Mapping[str, Any]:
        return self._property(self.identifiers, name)

    def attribute_schema(self, name: str) -> Mapping[str, Any]:
        return self._property(self.attributes, name)

    def is_default_attribute(self, name: str) -> bool:
        return name in self.attributes["properties"]

    def event_field_schema(self, name: str) -> Mapping[str, Any]:
        return self._property(self.event, name)

    @property
    def event_params(self) -> Mapping[str, Any]:
        params: Mapping[str, Any] = self.event["properties"]["event_params"]
        return params

    def event_param_schema(self, name: str) -> Mapping[str, Any]:
        return self._property(self.event_params, name, root=self.event)

    def is_default_event_param(self, name: str) -> bool:
        return name in self.event_params["properties"]

    def audience_schema(self, name: str) -> Mapping[str, Any]:
        return self._property(self.audience, name)

    def retention_days(self, event_name: str, overrides: Mapping[str, int]) -> int:
        if event_name in overrides:
            return overrides[event_name]
        defaults: Mapping[str, int] = self.events["default_events"]
        if event_name in defaults:
            return defaults[event_name]
        return overrides.get("*", self.events["custom_event_retention_days"])

    def required_event_params(self) -> dict[str, list[str]]:
        """event name -> parameters it requires, read from the event schema's if/then rules."""
        rules: dict[str, list[str]] = {}
        for rule in self.event.get("allOf", []):
            name = rule["if"]["properties"]["event_name"]["const"]
            rules[name] = list(rule["then"]["properties"]["event_params"]["required"])
        return rules

    @staticmethod
    def _property(
        section: Mapping[str, Any], name: str, root: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        """The schema one key of ``section`` must match, ``$ref``s resolved against ``root``."""
        schema = section.get("properties", {}).get(name, section.get("additionalProperties", {}))
        resolved: Mapping[str, Any] = resolve_refs(schema, root or section)
        return resolved


def resolve_refs(schema: Any, root: Mapping[str, Any]) -> Any:
    """Inline local ``$ref`` (``#/$defs/...``) so a sub-schema stands alone."""
    if isinstance(schema, list):
        return [resolve_refs(item, root) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    resolved = {k: resolve_refs(v, root) for k, v in schema.items() if k != "$ref"}
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        referenced = resolve_refs(target, root)
        # A $ref beside other keywords applies in conjunction with them.
        return {"allOf": [resolved, referenced]} if resolved else referenced
    return resolved


@cache
def load_spec() -> Spec:
    return Spec(
        identifiers=load_schema("insider", "identifiers.json"),
        attributes=load_schema("insider", "attributes.json"),
        event=load_schema("insider", "event.json"),
        audience=load_schema("insider", "audience.json"),
        events=load_schema("insider", "events.json"),
    )
