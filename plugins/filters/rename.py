"""``{type: rename, case: snake, columns: {old: new}}``: new names, same values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from arrowbulk import ConfigError, FilterPlugin, load_schema

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(name: str) -> str:
    """``First Name`` -> ``first_name``, ``birthDate`` -> ``birth_date``, ``Email`` -> ``email``."""
    spaced = _CAMEL.sub("_", name)
    return _NOT_WORD.sub("_", spaced).strip("_").lower()


class RenameFilter(FilterPlugin):
    type_name = "rename"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("filters", "rename.json")

    def transform_schema(self, schema: pa.Schema) -> pa.Schema:
        self.names = self._new_names(schema.names)
        return pa.schema(
            [f.with_name(n) for f, n in zip(schema, self.names, strict=True)], schema.metadata
        )

    def _new_names(self, names: list[str]) -> list[str]:
        cased = [snake_case(n) for n in names] if self.config.get("case") == "snake" else names
        mapping: dict[str, str] = self.config.get("columns", {})
        unknown = sorted(set(mapping) - set(cased))
        if unknown:
            raise ConfigError(
                f"filters: rename.columns names {', '.join(unknown)}, which the input does not "
                f"have (it has {', '.join(cased)}"
                + (", after case: snake" if self.config.get("case") else "")
                + ")"
            )
        final = [mapping.get(n, n) for n in cased]
        seen: dict[str, str] = {}
        for original, new in zip(names, final, strict=True):
            if new in seen:
                raise ConfigError(
                    f"filters: rename gives {seen[new]!r} and {original!r} the same name {new!r}; "
                    "name one of them in rename.columns"
                )
            seen[new] = original
        return final

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.rename_columns(self.names)
