"""A JSON Lines row nested thousands of levels deep is refused clearly, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arrowbulk.errors import JobError
from arrowbulk.plugins.file.json_depth import MAX_DEPTH, check_json_depth


def deep(levels: int) -> str:
    return json.dumps({"id": 1}).replace("1}", "[" * levels + "1" + "]" * levels + "}")


@pytest.mark.parametrize("command", ["preview", "run"])
def test_a_row_nested_10000_levels_is_refused_not_a_segfault(
    tmp_path: Path, write_pipeline, command: str
) -> None:
    data = tmp_path / "deep.jsonl"
    data.write_text('{"id": 1}\n{"id": 2}\n' + deep(10_000) + "\n")
    job = write_pipeline({"type": "file", "path": "deep.jsonl"}, {"type": "null"})
    result = subprocess.run(
        [sys.executable, "-m", "arrowbulk.cli", command, str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr  # not -11 (SIGSEGV)
    assert f"deep.jsonl, line 3: nested more than {MAX_DEPTH} levels deep" in result.stderr
    assert "internal error" not in result.stderr


def test_brackets_inside_strings_do_not_count(tmp_path: Path) -> None:
    data = tmp_path / "strings.jsonl"
    brackets = "[" * 5000 + '"{' * 500
    data.write_text(json.dumps({"text": brackets}) + "\n" + deep(MAX_DEPTH - 1) + "\n")
    check_json_depth(data)  # no error: the first line's brackets are text


def test_the_limit_is_exact_across_block_boundaries(tmp_path: Path, monkeypatch) -> None:
    from arrowbulk.plugins.file import json_depth

    monkeypatch.setattr(json_depth, "_BLOCK", 7)  # lines and brackets cut across blocks
    ok, too_deep = tmp_path / "ok.jsonl", tmp_path / "deep.jsonl"
    ok.write_text((deep(MAX_DEPTH - 1) + "\n") * 3)
    too_deep.write_text(deep(3) + "\n" + deep(MAX_DEPTH) + "\n")
    check_json_depth(ok)
    with pytest.raises(JobError, match="line 2: nested more than"):
        check_json_depth(too_deep)


def test_every_suspect_line_of_a_block_is_checked(tmp_path: Path) -> None:
    strings = json.dumps({"text": "[" * 500}) + "\n"  # deep-looking, but only text
    data = tmp_path / "mixed.jsonl"
    data.write_text(strings + strings + deep(MAX_DEPTH + 5) + "\n")
    with pytest.raises(JobError, match="line 3: nested more than"):
        check_json_depth(data)
