"""Pipeline configs: YAML or JSON in, validated sections out.

Rules that live here:

- YAML is loaded with ``yaml.safe_load`` only.
- ``${VAR}`` and ``${VAR:-default}`` are replaced in string values *after* parsing, so an
  environment value can never change the shape of the config; ``$${`` writes a literal ``${``.
- Every section is validated with its plugin's JSON Schema before any data moves, and an error
  names the key path and what was expected; values of keys the schema marks ``writeOnly``
  (secrets) are never echoed, and reach the plugin wrapped in :class:`Secret`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from arrowbulk.errors import ConfigError
from arrowbulk.secret import Secret

log = logging.getLogger(__name__)

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline as the user wrote it, with environment variables filled in."""

    input: dict[str, Any]
    output: dict[str, Any]
    exec: dict[str, Any]
    base_dir: Path
    filters: tuple[dict[str, Any], ...] = ()


def load_pipeline_file(path: Path, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read a YAML (or JSON, which is YAML) pipeline file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        document = _load_yaml(text, path)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return pipeline_from_mapping(document, path.resolve().parent, environ)


#: More values than any pipeline needs; an alias bomb (``&a [*b, *b, ...]`` nested) expands
#: to billions, at any depth of the document.
MAX_YAML_VALUES = 100_000


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load``, refusing documents whose aliases expand past MAX_YAML_VALUES."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node, {}, set(), path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _count_values(node: yaml.Node, seen: dict[int, int], open_nodes: set[int], path: Path) -> int:
    """How many values ``node`` becomes once its aliases are expanded (memoized per node)."""
    key = id(node)
    if key in seen:
        return seen[key]
    if key in open_nodes:
        raise ConfigError(
            f"{path}: an alias refers to itself; a pipeline config cannot be recursive"
        )
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_count_values(child, seen, open_nodes, path) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            total += _count_values(name, seen, open_nodes, path)
            total += _count_values(value, seen, open_nodes, path)
    open_nodes.discard(key)
    if total > MAX_YAML_VALUES:
        raise ConfigError(
            f"{path}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
            "a pipeline config is far smaller (an alias bomb?)"
        )
    seen[key] = total
    return total


def pipeline_from_mapping(
    document: Any, base_dir: Path, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Check the top level of a pipeline and interpolate its environment variables."""
    if not isinstance(document, dict):
        raise ConfigError("a pipeline config must be a mapping with 'in:' and 'out:' sections")
    unknown = sorted(set(document) - {"in", "out", "exec", "filters"})
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}: "
            "a pipeline has only 'in:', 'filters:', 'out:' and 'exec:'"
        )
    env = os.environ if environ is None else environ
    sections: dict[str, dict[str, Any]] = {}
    for key in ("in", "out", "exec"):
        value = document.get(key, {} if key == "exec" else None)
        if not isinstance(value, dict):
            example = "{max_threads: 2}" if key == "exec" else "{type: ...}"
            raise ConfigError(f"{key}: must be a mapping, e.g. '{key}: {example}'")
        sections[key] = interpolate(value, env, key)
    for key in ("in", "out"):
        if key in sections and "type" in sections[key] and sections[key]["type"] is None:
            # YAML reads `type: null` as a null value; the user meant the `null` plugin.
            sections[key]["type"] = "null"
        if not isinstance(sections[key].get("type"), str):
            raise ConfigError(
                f"{key}.type: required; name the plugin, e.g. '{key}: {{type: file}}'"
            )
    filters = document.get("filters") or []
    if not isinstance(filters, list) or not all(
        isinstance(f, dict) and isinstance(f.get("type"), str) for f in filters
    ):
        raise ConfigError(
            "filters: must be a list of mappings with a type, e.g. 'filters: [{type: rename, case: snake}]'"
        )
    chain = tuple(interpolate(f, env, f"filters[{i}]") for i, f in enumerate(filters))
    return PipelineConfig(sections["in"], sections["out"], sections["exec"], base_dir, chain)


def interpolate(value: Any, environ: Mapping[str, str], path: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string below ``value``."""
    if isinstance(value, str):
        return _interpolate_string(value, environ, path)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _interpolate_string(text: str, environ: Mapping[str, str], path: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: environment variable {name} is not set; "
            f"export it or write ${{{name}:-default}}"
        )

    return _VARIABLE.sub(substitute, text)


def validate_section(
    section: str, config: Mapping[str, Any], schema: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate one section; return it with defaults filled in and secrets wrapped.

    A plugin's schema need not list ``type`` (the host chose the plugin by it): it is added
    when missing, so a schema with ``additionalProperties: false`` does not refuse it.
    """
    properties = schema.get("properties", {})
    if "type" in config and isinstance(properties, Mapping) and "type" not in properties:
        schema = {**schema, "properties": {**properties, "type": {"type": "string"}}}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        secrets = set(secret_keys(schema))
        lines = [_describe(section, error, secrets) for error in errors]
        raise ConfigError("\n".join(dict.fromkeys(lines)))
    resolved = _with_defaults(dict(config), schema)
    for key in secret_keys(schema):
        if isinstance(resolved.get(key), str):
            resolved[key] = Secret(checked_secret(f"{section}.{key}", resolved[key]))
    return resolved


def checked_secret(path: str, value: str) -> str:
    """A secret as it will be sent: surrounding white space (a newline from a file) stripped
    with a warning; control characters inside refused (they cannot travel in a header)."""
    Secret(value)  # known to the scrubber in every form before any message can show it
    stripped = value.strip()
    if stripped != value:
        log.warning("%s: removed white space around the value (a newline read from a file?)", path)
    if not stripped:
        raise ConfigError(f"{path}: empty; set it, e.g. from an environment variable")
    if any(ord(c) < 32 or ord(c) == 127 for c in stripped):
        raise ConfigError(
            f"{path}: holds a control character (value hidden, it is a secret); "
            "check how the key was copied"
        )
    return stripped


def secret_keys(schema: Mapping[str, Any]) -> Iterable[str]:
    for key, spec in schema.get("properties", {}).items():
        if isinstance(spec, Mapping) and spec.get("writeOnly"):
            yield key


def _with_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    for key, spec in schema.get("properties", {}).items():
        if key not in config and isinstance(spec, Mapping) and "default" in spec:
            config[key] = spec["default"]
    return config


def _describe(section: str, error: jsonschema.ValidationError, secrets: set[str]) -> str:
    path = ".".join([section, *(str(p) for p in error.absolute_path)])
    top_key = str(error.absolute_path[0]) if error.absolute_path else None
    if top_key in secrets:
        # The message of a jsonschema error quotes the value: never for a secret.
        return f"{path}: invalid value (hidden, it is a secret): expected {_expected(error)}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{path}: {error.message}; allowed keys: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{path}: {error.message}"
    hint = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    return f"{path}: {error.message}" + (f" ({hint})" if hint else "")


def _expected(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    kind = schema.get("type", "a valid value")
    return f"{kind} ({error.validator} rule)"
