"""The Python API for orchestrators (Airflow, Dagster, cron wrappers): ``arrowbulk.run``.

    import arrowbulk

    summary = arrowbulk.run("jobs/users.yml", config_diff="state/users.diff.yml")
    print(summary.accepted, summary.rejected, summary.config_diff)

``config`` is a path to a YAML/JSON pipeline or a mapping (relative paths in a mapping are
taken from the working directory). The summary is a :class:`JobSummary`, the same figures as
``--summary-json``. Errors are raised as arrowbulk's classes: :class:`ConfigError` and
:class:`SchemaError` before anything is sent, :class:`JobError` (and :class:`RecordError`,
:class:`AuthError`, :class:`Interrupted`) for a run that failed; such an error carries the
run's summary as ``error.summary``. The CLI's ``run`` is a thin shell over :func:`run_pipeline`.

Config diffs (Embulk's): with ``config_diff=PATH``, an existing file is merged into the config
before the run (``{in: {...}, out: {...}}``, key by key); after a successful run the next diff
(the old one updated by what the run reports) replaces it atomically; after a failed run it is
left as it was, so the same command (with ``resume=``) continues the failed run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml

from arrowbulk.cancel import Cancellation
from arrowbulk.config import PipelineConfig, load_pipeline_file, pipeline_from_mapping
from arrowbulk.errors import ConfigError, JobError
from arrowbulk.progress import Progress
from arrowbulk.registry import Registry, load_registry
from arrowbulk.runner import Job
from arrowbulk.summary import JobSummary
from arrowbulk.writable import write_atomically

#: Wraps the run: given the job's cancellation, e.g. to stop it on signals (the CLI's).
Around = Callable[[Cancellation], AbstractContextManager[None]]


def run(
    config: str | os.PathLike[str] | Mapping[str, Any],
    *,
    resume: str | os.PathLike[str] | None = None,
    config_diff: str | os.PathLike[str] | None = None,
    full: bool = False,
    registry: Registry | None = None,
) -> JobSummary:
    """Run a pipeline; return its summary, or raise its error (with ``.summary``)."""
    pipeline = (
        pipeline_from_mapping(dict(config), Path.cwd())
        if isinstance(config, Mapping)
        else load_pipeline_file(Path(config))
    )
    summary = run_pipeline(
        pipeline,
        registry or load_registry(),
        resume=Path(resume) if resume is not None else None,
        config_diff=Path(config_diff) if config_diff is not None else None,
        full=full,
    )
    if summary.exception is not None:
        error = summary.exception
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


def run_pipeline(
    pipeline: PipelineConfig,
    registry: Registry,
    *,
    resume: Path | None = None,
    config_diff: Path | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
    around: Around | None = None,
    full: bool = False,
) -> JobSummary:
    """Run one pipeline, with its config diff merged in and the next one written on success."""
    earlier = read_config_diff(config_diff) if config_diff is not None else {}
    pipeline = merge_config_diff(pipeline, earlier)
    job = Job(
        pipeline, registry, run_id=run_id, progress=progress, resume=resume, full_refresh=full
    )
    with around(job.cancellation) if around is not None else contextlib.nullcontext():
        summary = job.run()
    if config_diff is not None and summary.status == "success":
        write_config_diff(config_diff, deep_merge(earlier, summary.config_diff))
    return summary


def read_config_diff(path: Path) -> dict[str, Any]:
    """A diff file's sections, or nothing when it does not exist yet (the first run)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"--config-diff: cannot read {path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--config-diff: {path} is not valid YAML: {error}") from None
    if document is None:
        return {}
    if not isinstance(document, dict) or set(document) - {"in", "out"}:
        raise ConfigError(
            f"--config-diff: {path} must hold only 'in:' and 'out:' sections (a file arrowbulk "
            "wrote); delete it to start from the config alone"
        )
    return document


def merge_config_diff(pipeline: PipelineConfig, diff: Mapping[str, Any]) -> PipelineConfig:
    if not diff:
        return pipeline
    return PipelineConfig(
        deep_merge(pipeline.input, diff.get("in") or {}),
        deep_merge(pipeline.output, diff.get("out") or {}),
        pipeline.exec,
        pipeline.base_dir,
        pipeline.filters,
    )


def write_config_diff(path: Path, diff: Mapping[str, Any]) -> None:
    """Atomically: a crash leaves the old diff or the new one, never half of one."""
    text = (
        "# Written by arrowbulk after a successful run; merged into the config by the next\n"
        "# `arrowbulk run JOB.yml -c THIS_FILE`. Delete it to start over.\n"
        + yaml.safe_dump(dict(diff), sort_keys=True, allow_unicode=True)
    )
    try:
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except OSError as error:
        raise JobError(
            f"--config-diff: cannot write {path}: {error.strerror or error}; the run succeeded, "
            "but its diff was not kept: the next run reads the same rows again"
        ) from None


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
