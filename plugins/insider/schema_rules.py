"""JSON Schema constructs compiled into vectorized checks over prepared columns.

The schemas in ``schemas/insider/`` stay the single source of truth; this module reads the
keywords the default data spec uses (type, pattern, enum, const, min/max length, bounds,
not, items, allOf, type-only anyOf, $ref already inlined) and turns each into an Arrow
compute expression marking the rows that break it. A keyword it does not know makes the
whole property *uncompiled*: those values are checked by jsonschema itself, one by one.
Messages are always worded by jsonschema, for the failing rows only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowbulk.plugins.insider.prepare import Prepared

#: Marks the rows (True) whose value breaks one rule.
Check = Callable[[Prepared], pa.BooleanArray]

ANNOTATIONS = {
    "title",
    "description",
    "fix",  # ours: how to fix a value that breaks the rule, shown in messages
    "normalize",  # ours: which normalization the value gets before checks (see normalize.py)
    "$comment",
    "default",
    "examples",
    "$schema",
    "$id",
    "$defs",
}


class Uncompiled(Exception):
    """A schema construct this compiler does not translate; jsonschema checks it instead."""


@dataclass(frozen=True)
class Rule:
    name: str  # the JSON Schema keyword, e.g. "pattern"
    check: Check


def compile_schema(schema: Mapping[str, Any]) -> list[Rule]:
    """The rules of one property's schema, or raise :class:`Uncompiled`."""
    rules: list[Rule] = []
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        compiler = _COMPILERS.get(keyword)
        if compiler is None:
            raise Uncompiled(keyword)
        rules.extend(compiler(value, schema))
    return rules


def _type(value: Any, schema: Mapping[str, Any]) -> list[Rule]:
    expected = {value} if isinstance(value, str) else set(value)
    return [Rule("type", lambda p: _kind_not_in(p, expected, None))]


def _any_of(branches: list[Any], schema: Mapping[str, Any]) -> list[Rule]:
    """Only the shape the spec uses: each branch a type, or an array with a typed item."""
    scalars: set[str] = set()
    arrays: set[str] = set()
    for branch in branches:
        keys = set(branch) - ANNOTATIONS
        if keys == {"type"} and isinstance(branch["type"], str) and branch["type"] != "array":
            scalars.add(branch["type"])
        elif keys <= {"type", "items"} and branch.get("type") == "array":
            item = branch.get("items", {})
            if set(item) - ANNOTATIONS != {"type"} or not isinstance(item["type"], str):
                raise Uncompiled("anyOf")
            arrays.add(item["type"])
        else:
            raise Uncompiled("anyOf")
    return [Rule("anyOf", lambda p: _kind_not_in(p, scalars, arrays))]


def _kind_not_in(p: Prepared, scalars: set[str], arrays: set[str] | None) -> pa.BooleanArray:
    """Rows whose JSON kind is not allowed; ``arrays`` lists allowed item types of arrays."""
    ok = _none(p)
    if p.strings is not None and "string" in scalars:
        ok = pc.or_(ok, pc.is_valid(p.strings))
    if p.booleans is not None and "boolean" in scalars:
        ok = pc.or_(ok, pc.is_valid(p.booleans))
    if p.numbers is not None and "number" in scalars:
        ok = pc.or_(ok, pc.is_valid(p.numbers))
    elif p.numbers is not None and "integer" in scalars:
        ok = pc.or_(ok, pc.fill_null(pc.equal(p.numbers, pc.floor(p.numbers)), False))
    any_array = "array" in scalars or bool(arrays)
    for lists, item_kind in ((p.string_lists, "string"), (p.number_lists, "number")):
        if lists is None:
            continue
        if "array" in scalars or (arrays is not None and item_kind in arrays):
            ok = pc.or_(ok, pc.is_valid(lists))
        elif any_array:  # an empty array fits an array of any item type
            ok = pc.or_(ok, pc.fill_null(pc.equal(pc.list_value_length(lists), 0), False))
    return pc.and_(p.present(), pc.invert(ok))


def _on_strings(name: str, test: Callable[[pa.Array], pa.Array]) -> list[Rule]:
    def check(p: Prepared) -> pa.BooleanArray:
        if p.strings is None:
            return _none(p)
        return pc.fill_null(test(p.strings), False)

    return [Rule(name, check)]


def _on_numbers(name: str, test: Callable[[pa.Array], pa.Array]) -> list[Rule]:
    def check(p: Prepared) -> pa.BooleanArray:
        if p.numbers is None:
            return _none(p)
        return pc.fill_null(test(p.numbers), False)

    return [Rule(name, check)]


def _pattern(value: str, schema: Mapping[str, Any]) -> list[Rule]:
    try:
        pc.match_substring_regex(pa.array([""]), value)
    except pa.ArrowInvalid:
        raise Uncompiled("pattern") from None  # RE2 cannot run it; Python's re will
    [rule] = _on_strings("pattern", lambda s: pc.invert(pc.match_substring_regex(s, value)))

    def check(p: Prepared) -> pa.BooleanArray:
        if value in p.forms:  # normalization matched every value to a form that implies it
            return _none(p)
        return rule.check(p)

    return [Rule("pattern", check)]


def _enum(values: list[Any], schema: Mapping[str, Any]) -> list[Rule]:
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(strings) + len(numbers) != len(values):
        raise Uncompiled("enum")

    def check(p: Prepared) -> pa.BooleanArray:
        allowed = _none(p)
        if p.strings is not None:
            allowed = pc.or_(
                allowed, pc.fill_null(pc.is_in(p.strings, pa.array(strings, pa.string())), False)
            )
        if p.numbers is not None:
            allowed = pc.or_(
                allowed, pc.fill_null(pc.is_in(p.numbers, pa.array(numbers, pa.float64())), False)
            )
        return pc.and_(p.present(), pc.invert(allowed))

    return [Rule("enum", check)]


def _const(value: Any, schema: Mapping[str, Any]) -> list[Rule]:
    return [Rule("const", r.check) for r in _enum([value], schema)]


def _not(sub: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Rule]:
    keys = set(sub) - ANNOTATIONS
    if keys == {"pattern"}:
        pattern = sub["pattern"]
        _pattern(pattern, sub)
        return _on_strings("not", lambda s: pc.match_substring_regex(s, pattern))
    if keys == {"enum"} and all(isinstance(v, str) for v in sub["enum"]):
        banned = pa.array(sub["enum"], pa.string())
        return _on_strings("not", lambda s: pc.is_in(s, banned))
    raise Uncompiled("not")


def _items(item_schema: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Rule]:
    item_rules = compile_schema(item_schema)

    def check(p: Prepared) -> pa.BooleanArray:
        failing = _none(p)
        for lists, field in ((p.string_lists, "strings"), (p.number_lists, "numbers")):
            if lists is None:
                continue
            flat = pc.list_flatten(lists)  # respects slices, like list_parent_indices
            if len(flat) == 0:
                continue
            # The item rules read typed values and presence, never the text: no cast to text.
            items = Prepared("item", flat, **{field: flat})
            bad_items = _none(items)
            for rule in item_rules:
                bad_items = pc.or_(bad_items, rule.check(items))
            parents = pc.list_parent_indices(lists)
            bad_rows = pc.unique(pc.filter(parents, bad_items)).cast(pa.int64())
            row_numbers = pa.array(np.arange(len(p), dtype=np.int64))
            failing = pc.or_(failing, pc.is_in(row_numbers, value_set=bad_rows))
        return failing

    return [Rule("items", check)]


def _all_of(subs: list[Mapping[str, Any]], schema: Mapping[str, Any]) -> list[Rule]:
    return [rule for sub in subs for rule in compile_schema(sub)]


def _none(p: Prepared) -> pa.BooleanArray:
    return pa.array(np.zeros(len(p), dtype=bool))


def _bound(
    name: str, op: Callable[[pa.Array, Any], pa.Array]
) -> Callable[[Any, Mapping[str, Any]], list[Rule]]:
    return lambda value, schema: _on_numbers(name, lambda n: op(n, value))


def _length(
    name: str, op: Callable[[pa.Array, Any], pa.Array]
) -> Callable[[Any, Mapping[str, Any]], list[Rule]]:
    return lambda value, schema: _on_strings(name, lambda s: op(pc.utf8_length(s), value))


_COMPILERS: dict[str, Callable[[Any, Mapping[str, Any]], list[Rule]]] = {
    "type": _type,
    "anyOf": _any_of,
    "allOf": _all_of,
    "pattern": _pattern,
    "enum": _enum,
    "const": _const,
    "not": _not,
    "items": _items,
    "minimum": _bound("minimum", pc.less),
    "maximum": _bound("maximum", pc.greater),
    "exclusiveMinimum": _bound("exclusiveMinimum", pc.less_equal),
    "exclusiveMaximum": _bound("exclusiveMaximum", pc.greater_equal),
    "minLength": _length("minLength", pc.less),
    "maxLength": _length("maxLength", pc.greater),
}
