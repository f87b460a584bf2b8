"""A real third-party package, installed with pip, is discovered and used by its type name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "arrowbulk-csv"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # --target keeps the test environment clean; --no-deps because arrowbulk is already here;
    # --no-build-isolation so no network is needed to build it.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=build,
    )
    return {**os.environ, "PYTHONPATH": str(target), "ARROWBULK_PLUGINS": ""}


def arrowbulk(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arrowbulk.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugins_lists_the_installed_package(installed: dict[str, str], tmp_path: Path) -> None:
    done = arrowbulk(installed, "plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    mine = [r for r in json.loads(done.stdout) if r.get("distribution") == "arrowbulk-csv"]
    assert sorted(mine, key=lambda r: r["kind"]) == [
        {
            "kind": "filter",
            "name": "trim",
            "class": "arrowbulk_csv.TrimFilter",
            "entry_point": "csv",
            "distribution": "arrowbulk-csv",
            "version": "0.1.0",
        },
        {
            "kind": "output",
            "name": "csv",
            "class": "arrowbulk_csv.CsvOutput",
            "entry_point": "csv",
            "distribution": "arrowbulk-csv",
            "version": "0.1.0",
        },
    ]


def test_a_pipeline_uses_it_by_type_name(installed: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1, "name": "Ada"}\n{"id": 2, "name": "Grace"}\n')
    (tmp_path / "job.yml").write_text(
        "in: {type: file, path: in.jsonl}\nout: {type: csv, path: out.csv}\n"
    )
    done = arrowbulk(installed, "run", "job.yml", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        '"id","name"',
        '1,"Ada"',
        '2,"Grace"',
    ]


def test_its_filter_runs_between_a_built_in_input_and_output(
    installed: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,  Ada \n2,Grace\t\n")
    (tmp_path / "job.yml").write_text(
        "in: {type: file, path: in.csv}\n"
        "filters: [{type: trim}]\n"
        "out: {type: file, path: out.jsonl}\n"
    )
    done = arrowbulk(installed, "run", "job.yml", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]
