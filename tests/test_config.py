"""Pipeline configs: environment interpolation, safe loading, errors that name the key path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from arrowbulk.config import interpolate, load_pipeline_file, validate_section
from arrowbulk.errors import ConfigError
from arrowbulk.secret import Secret


def test_env_variables_are_interpolated_with_defaults() -> None:
    env = {"TOKEN": "abc", "EMPTY": ""}
    config = {
        "a": "${TOKEN}",
        "b": "x-${MISSING:-fallback}-y",
        "c": ["${EMPTY:-d}", 3],
        "d": "$${TOKEN}",
    }
    assert interpolate(config, env, "out") == {
        "a": "abc",
        "b": "x-fallback-y",
        "c": ["", 3],
        "d": "${TOKEN}",
    }


def test_a_missing_env_variable_names_the_key_and_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"out\.api_key: environment variable INSIDER_KEY is not set"
    ):
        interpolate({"api_key": "${INSIDER_KEY}"}, {}, "out")


def test_an_env_value_cannot_change_the_shape_of_the_config(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("in: {type: file, path: '${P}'}\nout: {type: null}\n")
    pipeline = load_pipeline_file(job, {"P": "x.csv', extra: {injected: 1}, z: '"})
    assert pipeline.input["path"] == "x.csv', extra: {injected: 1}, z: '"
    assert set(pipeline.input) == {"type", "path"}


def test_unsafe_yaml_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("in: !!python/object/apply:os.system ['echo hi']\nout: {type: null}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline_file(job)


def test_top_level_mistakes_are_named(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("in: {type: file, path: a.csv}\nout: {type: null}\nexcec: {}\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key.*'excec'"):
        load_pipeline_file(job)
    job.write_text("in: {path: a.csv}\nout: {type: null}\n")
    with pytest.raises(ConfigError, match=r"in\.type: required"):
        load_pipeline_file(job)


def test_schema_errors_name_the_key_path_and_what_was_expected() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["A", "B"]},
            "limits": {
                "type": "object",
                "properties": {"size": {"type": "integer", "maximum": 10}},
            },
        },
    }
    with pytest.raises(ConfigError) as raised:
        validate_section("out", {"mode": "C", "limits": {"size": 11}, "extra": 1}, schema)
    message = str(raised.value)
    assert "out.mode: 'C' is not one of ['A', 'B']" in message
    assert "out.limits.size: 11 is greater than the maximum of 10" in message
    assert "'extra' was unexpected" in message and "allowed keys: limits, mode" in message


def test_secret_values_are_wrapped_and_never_echoed_in_errors() -> None:
    schema = {
        "type": "object",
        "properties": {"api_key": {"type": "string", "writeOnly": True, "minLength": 30}},
    }
    resolved = validate_section("out", {"api_key": "s3cr3t-value-long-enough-to-pass-ok"}, schema)
    assert isinstance(resolved["api_key"], Secret)
    assert "s3cr3t" not in repr(resolved) and "s3cr3t" not in str(resolved)
    with pytest.raises(ConfigError) as raised:
        validate_section("out", {"api_key": "short-s3cr3t"}, schema)
    assert "out.api_key" in str(raised.value)
    assert "short-s3cr3t" not in str(raised.value)


def test_defaults_are_filled_in() -> None:
    schema = {"type": "object", "properties": {"batch_size": {"type": "integer", "default": 7}}}
    assert validate_section("in", {}, schema) == {"batch_size": 7}


def test_an_alias_bomb_anywhere_is_refused_at_once(tmp_path, cli) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    nested = "in:\n  type: file\n  path: x\n" + "".join(f"  {line}\n" for line in levels)
    job = tmp_path / "bomb.yml"
    job.write_text(nested + "out: {type: 'null'}\n")
    started = time.monotonic()
    result = cli("validate", job)
    assert time.monotonic() - started < 5
    assert result.code == 2
    assert "expand to more than 100,000 values" in result.err


def test_a_recursive_alias_is_refused(tmp_path, cli) -> None:
    job = tmp_path / "loop.yml"
    job.write_text("in: &a {type: file, path: [*a]}\nout: {type: 'null'}\n")
    result = cli("validate", job)
    assert result.code == 2 and "refers to itself" in result.err
