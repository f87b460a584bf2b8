"""Record-level validation of one batch: which rows break Insider's data spec, and why.

Column rules come from the JSON Schemas (compiled by :mod:`schema_rules`, jsonschema for the rest);
the row rules that JSON Schema cannot say about one column live here, each named:
``identifier`` (a user needs one), ``empty`` (nothing to send), ``required`` and the
purchase / cart parameters (from the event schema's ``required`` and ``if``/``then``),
``audience_length`` (ids and names pair up) and ``retention`` (Insider would silently drop
an event older than its retention).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from arrowbulk.plugins.insider.columns import ColumnPlan, Kind, Plan, Role
from arrowbulk.plugins.insider.config import InsiderTask
from arrowbulk.plugins.insider.operations import Takes
from arrowbulk.plugins.insider.prepare import Prepared
from arrowbulk.plugins.insider.schema_rules import ANNOTATIONS, Rule, Uncompiled, compile_schema
from arrowbulk.plugins.insider.spec import Spec
from arrowbulk.plugins.insider.timetext import (
    PER_SECOND,
    RFC3339_FORMS,
    outside_four_digit_years,
    rfc3339,
)


@dataclass(frozen=True)
class Issue:
    """Why one row cannot be sent as it is."""

    row: int  # index within the batch
    column: str | None
    rule: str
    message: str
    #: The rule is about this one value of an attribute or parameter: with
    #: ``on_invalid_value: drop_value`` the user may go without it.
    droppable: bool = False

    @property
    def reason(self) -> str:
        """A short stable key for counting rejections by reason."""
        return f"{self.column}: {self.rule}" if self.column else self.rule


@dataclass
class Verdict:
    valid: pa.BooleanArray
    #: Every rule each invalid row breaks, by row; a row's first issue is its reason.
    issues: list[Issue] = field(default_factory=list)
    #: The columns to encode: those validated, less the values dropped.
    prepared: Mapping[str, Prepared] = field(default_factory=dict)
    #: Values left out of users that are sent (``on_invalid_value: drop_value``).
    dropped: list[Issue] = field(default_factory=list)

    def by_row(self) -> list[list[Issue]]:
        """The issues grouped per invalid row, in row order."""
        return group_by_row(self.issues)


def group_by_row(issues: Sequence[Issue]) -> list[list[Issue]]:
    groups: list[list[Issue]] = []
    for issue in issues:
        if groups and groups[-1][0].row == issue.row:
            groups[-1].append(issue)
        else:
            groups.append([issue])
    return groups


@dataclass(frozen=True)
class _ColumnValidator:
    column: ColumnPlan
    rules: Sequence[Rule] | None  # None: not compiled, jsonschema checks each value
    validator: jsonschema.Draft202012Validator


class RecordValidator:
    """Validates prepared batches for one plan; built once per task."""

    def __init__(
        self, plan: Plan, task: InsiderTask, spec: Spec, now: dt.datetime | None = None
    ) -> None:
        self.plan, self.task, self.spec = plan, task, spec
        self.now = now
        self.columns = [_compile(column) for column in plan.columns]
        self.required_params = (
            spec.required_event_params() if plan.operation.spec.takes is Takes.EVENTS else {}
        )

    @property
    def uncompiled(self) -> list[str]:
        return [c.column.name for c in self.columns if c.rules is None]

    def validate(self, prepared: Mapping[str, Prepared], rows: int) -> Verdict:
        issues = self._issues(prepared, rows)
        if issues and self.task.drop_invalid_values:
            return self._drop_values(prepared, rows, issues)
        return Verdict(_valid(issues, rows), issues, prepared)

    def _drop_values(
        self, prepared: Mapping[str, Prepared], rows: int, issues: list[Issue]
    ) -> Verdict:
        """Leave out the values that break a rule, where that is all a row breaks; check again
        (a user left with nothing to send, or none of its identifiers, is still rejected)."""
        droppable = [group for group in group_by_row(issues) if all(i.droppable for i in group)]
        if not droppable:
            return Verdict(_valid(issues, rows), issues, prepared)
        masks: dict[str, np.ndarray] = {}
        for group in droppable:
            for issue in group:
                assert issue.column is not None
                masks.setdefault(issue.column, np.zeros(rows, dtype=bool))[issue.row] = True
        remaining = dict(prepared)
        for name, mask in masks.items():
            remaining[name] = prepared[name].without(mask)
        again = self._issues(remaining, rows)
        still_failing = {issue.row for issue in again}
        dropped_from = {group[0].row: group for group in droppable}
        final: list[Issue] = []
        for group in group_by_row(again):
            # A row that fails once its values are dropped is rejected for that (its first
            # issue, the reason counted), listing the values it would have lost as well.
            final.extend(group)
            final.extend(dropped_from.get(group[0].row, []))
        dropped = [i for g in droppable for i in g if i.row not in still_failing]
        return Verdict(_valid(final, rows), final, remaining, dropped)

    def _issues(self, prepared: Mapping[str, Prepared], rows: int) -> list[Issue]:
        """Every rule every row breaks, sorted by row (stable: rules in the order checked)."""
        issues: list[Issue] = []

        def flag(
            mask: pa.Array,
            column: str | None,
            rule: str,
            message_of: Any,
            droppable: bool = False,
        ) -> None:
            # Rules rarely fail: one cheap test per rule, the row work only when one does.
            if mask.null_count:
                mask = pc.fill_null(mask, False)
            broken = mask.to_numpy(zero_copy_only=False)
            if not broken.any():
                return
            for row in np.flatnonzero(broken).tolist():
                issues.append(Issue(row, column, rule, message_of(row), droppable))

        for checker in self.columns:
            values = prepared[checker.column.name]
            droppable = self._droppable(checker.column)
            if values.errors is not None:
                errors = values.errors
                flag(
                    pc.is_valid(errors),
                    checker.column.name,
                    values.error_rule,
                    lambda r, e=errors: e[r].as_py(),
                    droppable,
                )
            if (
                self.plan.operation.spec.takes is Takes.MARKERS
                and not checker.column.role.is_identifier
            ):
                continue  # a value there only marks a deletion: any non-null value will do
            self._column_rules(checker, values, flag, droppable)
        self._row_rules(prepared, rows, flag)
        issues.sort(key=lambda issue: issue.row)
        return issues

    def _droppable(self, column: ColumnPlan) -> bool:
        return not column.role.is_identifier and column.role not in {
            Role.EVENT_NAME,
            Role.TIMESTAMP,
        }

    def _column_rules(
        self, checker: _ColumnValidator, values: Prepared, flag: Any, droppable: bool
    ) -> None:
        name = checker.column.name
        if checker.rules is None:
            present = pc.indices_nonzero(values.present()).to_pylist()
            bad = [r for r in present if _first_error(checker.validator, values.json[r].as_py())]
            mask = pc.is_in(
                pa.array(np.arange(len(values), dtype=np.int64)), pa.array(bad, pa.int64())
            )
            flag(mask, name, "schema", lambda r: _message(checker, values, r), droppable)
            return
        for rule in checker.rules:
            flag(
                rule.check(values),
                name,
                rule.name,
                lambda r: _message(checker, values, r),
                droppable,
            )

    def _row_rules(self, prepared: Mapping[str, Prepared], rows: int, flag: Any) -> None:
        plan = self.plan
        no_identifier = _none_present(prepared, plan.identifiers, rows)
        flag(
            no_identifier,
            None,
            "identifier",
            lambda r: (
                "no identifier value: every user needs at least one of "
                + ", ".join(c.name for c in plan.identifiers)
            ),
        )
        takes = plan.operation.spec.takes
        if takes is Takes.EVENTS:
            self._event_rules(prepared, rows, flag)
        elif plan.payload:
            names = ", ".join(c.name for c in plan.payload)
            flag(
                _none_present(prepared, plan.payload, rows),
                None,
                "empty",
                lambda r: f"nothing to send: {names} are all null",
            )
        if takes is Takes.ARRAYS:
            for column in plan.payload:
                values = prepared[column.name]
                if values.quoted is False:
                    continue  # Arrow lists, or texts that all hold arrays
                single = values.quoted if values.quoted is not True else np.ones(rows, dtype=bool)
                flag(
                    pc.and_(values.present(), pa.array(single)),
                    column.name,
                    "not_array",
                    lambda r, v=values: (
                        f"{v.json[r].as_py()} is a single value; REPLACE_ATTRIBUTES replaces "
                        "arrays: write it as an array text (['a', 'b']), or use UPSERT"
                    ),
                    True,
                )
        if takes is Takes.AUDIENCE and all(
            n in prepared for n in ("td_audience_id", "td_audience_name")
        ):
            ids, names_ = prepared["td_audience_id"], prepared["td_audience_name"]
            mismatch = pc.not_equal(_list_lengths(ids), _list_lengths(names_))
            flag(
                mismatch,
                "td_audience_name",
                "audience_length",
                lambda r: (
                    f"td_audience_id has {_list_lengths(ids)[r].as_py()} values but td_audience_name has "
                    f"{_list_lengths(names_)[r].as_py()}; they must pair up"
                ),
            )

    def _event_rules(self, prepared: Mapping[str, Prepared], rows: int, flag: Any) -> None:
        names = prepared["event_name"].strings
        for column in ("event_name", "timestamp"):
            flag(
                pc.invert(prepared[column].present()),
                column,
                "required",
                lambda r, c=column: f"{c} is required for every event",
            )
        for event_name, params in self.required_params.items():
            is_event = (
                pc.fill_null(pc.equal(names, event_name), False) if names is not None else None
            )
            if is_event is None:
                continue
            for param in params:
                missing = (
                    is_event
                    if param not in prepared
                    else pc.and_(is_event, pc.invert(prepared[param].present()))
                )
                flag(
                    missing,
                    param,
                    "required",
                    lambda r, p=param, e=event_name: f"{e} events require the parameter {p!r}",
                )
        self._retention(prepared, rows, flag)

    def _retention(self, prepared: Mapping[str, Prepared], rows: int, flag: Any) -> None:
        names = prepared["event_name"].strings
        timestamp = prepared["timestamp"]
        seconds = event_epoch_seconds(
            timestamp.times if timestamp.times is not None else timestamp.strings
        )
        if names is None or seconds is None:
            return
        now = (self.now or dt.datetime.now(dt.UTC)).timestamp()
        unique_names = pc.drop_null(pc.unique(names))
        limits = {
            n: self.spec.retention_days(n, self.task.retention_days)
            for n in unique_names.to_pylist()
        }
        days = pc.take(
            pa.array(list(limits.values()), pa.float64()),
            pc.index_in(names, value_set=unique_names),
        )
        too_old = pc.less(seconds, pc.subtract(now, pc.multiply(days, 86400.0)))
        flag(
            too_old,
            "timestamp",
            "retention",
            lambda r: (
                # The texts only for a message (checked on times, there are none yet).
                f"a {names[r].as_py()} event from {timestamp.json[r].as_py()} is older than "
                f"Insider keeps such events ({limits[names[r].as_py()]} days) and would be dropped silently; "
                f"if your tenant keeps them longer, set out.event_retention_days: {{{names[r].as_py()}: DAYS}}"
            ),
        )


def _valid(issues: Sequence[Issue], rows: int) -> pa.BooleanArray:
    valid = np.ones(rows, dtype=bool)
    valid[[issue.row for issue in issues]] = False
    return pa.array(valid)


def event_epoch_seconds(timestamps: pa.Array | None) -> pa.DoubleArray | None:
    """Times, or RFC 3339 strings, as seconds since the epoch (null where unreadable)."""
    if timestamps is None:
        return None
    if pa.types.is_timestamp(timestamps.type) or pa.types.is_date(timestamps.type):
        if pa.types.is_date(timestamps.type):
            timestamps = timestamps.cast(pa.date32()).cast(pa.timestamp("s"))
        timestamps = timestamps.cast(pa.timestamp(timestamps.type.unit))  # UTC, zone dropped
        seconds = timestamps.cast(pa.int64()).cast(pa.float64())
        return pc.divide(seconds, float(PER_SECOND[timestamps.type.unit]))
    try:
        parsed = timestamps.cast(pa.timestamp("us", "UTC"))
    except pa.ArrowInvalid:
        values = []
        for text in timestamps.to_pylist():
            try:
                values.append(dt.datetime.fromisoformat(text).timestamp() if text else None)
            except ValueError:
                values.append(None)
        return pa.array(values, pa.float64())
    return pc.divide(parsed.cast(pa.int64()).cast(pa.float64()), 1_000_000.0)


def _list_lengths(values: Prepared) -> pa.Array:
    lengths = pa.array(np.zeros(len(values), dtype=np.int32))
    for lists in (values.string_lists, values.number_lists):
        if lists is not None:
            lengths = pc.add(lengths, pc.fill_null(pc.list_value_length(lists), 0))
    return lengths


def _none_present(
    prepared: Mapping[str, Prepared], columns: Sequence[ColumnPlan], rows: int
) -> pa.BooleanArray:
    any_present = pa.array(np.zeros(rows, dtype=bool))
    for column in columns:
        any_present = pc.or_(any_present, prepared[column.name].present())
    return pc.invert(any_present)


def _compile(column: ColumnPlan) -> _ColumnValidator:
    validator = jsonschema.Draft202012Validator(column.schema)
    try:
        rules: Sequence[Rule] | None = compile_schema(column.schema)
    except Uncompiled:
        rules = None
    if column.kind is Kind.TIMESTAMP and _only_rfc3339_form(column.schema):
        rules = [Rule("pattern", _outside_rfc3339_form(column.schema["pattern"]))]
    return _ColumnValidator(column, rules, validator)


def _only_rfc3339_form(schema: Mapping[str, Any]) -> bool:
    """The schema asks a string of one of the forms rfc3339 gives every time of years 1-9999."""
    keys = {key for key in schema if key not in ANNOTATIONS}
    return (
        keys == {"type", "pattern"}
        and schema["type"] == "string"
        and schema["pattern"] in RFC3339_FORMS
    )


def _outside_rfc3339_form(pattern: str) -> Callable[[Prepared], pa.BooleanArray]:
    """The pattern rule of a timestamp column: only times outside the years 1-9999 can break
    it, so only their texts are made and matched (its type rule always holds: a time's text
    is a string)."""

    def check(values: Prepared) -> pa.BooleanArray:
        assert values.times is not None, "a timestamp column is prepared with its times"
        outside = pc.fill_null(outside_four_digit_years(values.times), False)
        if not pc.any(outside).as_py():
            return outside
        texts = rfc3339(pc.filter(values.times, outside))
        matched = pc.match_substring_regex(texts, pattern).to_numpy(zero_copy_only=False)
        broken = np.zeros(len(values), dtype=bool)
        broken[np.flatnonzero(outside.to_numpy(zero_copy_only=False))] = ~matched
        return pa.array(broken)

    return check


def _first_error(validator: jsonschema.Draft202012Validator, json_text: str | None) -> str | None:
    if json_text is None:
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(orjson.loads(json_text)))
    return _explain(error) if error is not None else None


def _explain(error: jsonschema.ValidationError) -> str:
    """What the broken rule means, with the value and how to fix it; not a regular expression."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = json.dumps(error.instance, ensure_ascii=False)
    meaning, fix = schema.get("description"), schema.get("fix")
    if error.validator == "pattern":
        text = (
            f"{value} is not {meaning}"
            if meaning
            else f"{value} does not have the form the spec asks for"
        )
    elif error.validator == "not":
        text = (
            f"{value} is a placeholder, not a real value (Insider advises never to send "
            "'undefined', 'null', 'anonymous', '0' and the like as identifiers)"
        )
        fix = fix or "leave it null, or send the user's real identifier"
    elif error.validator == "type":
        text = (
            f"{value} is a {type(error.instance).__name__}; the spec wants {error.validator_value}"
        )
    elif error.validator in {"maxLength", "minLength", "maxItems", "minItems"}:
        text = f"{value} breaks {error.validator} {error.validator_value}"
    else:
        text = error.message
    return f"{text}; {fix}" if fix else text


def _message(checker: _ColumnValidator, values: Prepared, row: int) -> str:
    text = values.json[row].as_py()
    message = _first_error(checker.validator, text)
    role = checker.column.role.value
    if message is None:  # the compiled rule and jsonschema disagree: say so rather than guess
        return f"{text} breaks the {role} spec (compiled check; jsonschema found no error)"
    return f"{message} (as {role})"
