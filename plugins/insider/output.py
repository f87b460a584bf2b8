"""The insider output plugin: Embulk's lifecycle around validation, encoding and delivery.

``transaction`` resolves the config and plans the columns (:mod:`job`), starts the job's
delivery and runs the tasks; each task is an :class:`InsiderPage` (:mod:`page`): per batch it
normalizes and prepares the columns, validates every record, encodes the valid ones as user
(or event) JSON column-wise and hands them to its :class:`RequestBuilder` (:mod:`batching`);
each request that closes goes to the job's :class:`Delivery`. ``finish`` sends what is left;
``commit`` awaits the answers and reports the task's account. The record checks before the
first request, and ``arrowbulk validate``'s dry run, are in :mod:`record_checks`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pyarrow as pa

from arrowbulk import (
    ConfigError,
    Control,
    JobError,
    OutputPlugin,
    PageOutput,
    RecordCheck,
    RunContext,
    load_schema,
)

# Kept importable from here: tests and tools build batches the way the plugin does.
from arrowbulk.plugins.insider.job import (  # noqa: F401
    Checked,
    InsiderJob,
    check_job,
    merge_reject_parts,
    prepare_batch,
    prepare_columns,
    reject_part,
)
from arrowbulk.plugins.insider.page import InsiderPage
from arrowbulk.plugins.insider.record_checks import InsiderDryRun, InsiderRecordCheck

log = logging.getLogger(__name__)


class InsiderOutput(OutputPlugin[Checked]):
    """``out: {type: insider, ...}``."""

    type_name = "insider"

    @classmethod
    def config_schema(cls) -> Mapping[str, Any]:
        return load_schema("insider", "output.json")

    def check(self, config: Mapping[str, Any], schema: pa.Schema, context: RunContext) -> Checked:
        return check_job(config, schema, context)

    def record_check(self, task: Checked, schema: pa.Schema) -> RecordCheck | None:
        if task.dry_run is not None:
            return InsiderDryRun(task, task.dry_run)
        if task.task.skip_invalid_records:
            return None  # records are checked as they come; the invalid ones are rejected
        return InsiderRecordCheck(task)

    def transaction(
        self,
        config: Mapping[str, Any],
        schema: pa.Schema,
        task_count: int,
        control: Control[Checked],
    ) -> dict[str, Any]:
        checked = self.check(config, schema, control.context)
        remote = control.context.executor != "local"
        if remote and checked.task.fingerprint_file is not None:
            raise ConfigError(
                f"out.only_changed: not with exec.type {control.context.executor} yet (the "
                "fingerprint store lives in this process); run with exec.type local"
            )
        job = InsiderJob(checked, control.context)
        succeeded = False
        try:
            control.run(replace(checked, job=job))
            succeeded = True
        finally:
            job.close()
            if remote:
                merge_reject_parts(checked.task.reject_file, task_count)
            if job.store is not None:
                self._save_fingerprints(job, control, succeeded)
        return {}

    @staticmethod
    def _save_fingerprints(job: InsiderJob, control: Control[Checked], succeeded: bool) -> None:
        """Whatever the outcome: the users Insider acknowledged need not be sent again."""
        assert job.store is not None
        job.store.close()
        task = job.task
        complete = succeeded and control.context.reads_everything
        try:
            figures = job.store.write(complete, task.removed_file)
        except JobError as error:
            if succeeded:
                raise
            log.error("%s", error)  # the job's own error is the one to report
            return
        if job.store.note:
            log.info("only_changed: %s", job.store.note)
            figures["note"] = job.store.note
        if not complete:
            figures["removed"] = "not counted (the run did not read every row)"
        control.details({"only_changed": figures})

    def open(self, task: Checked, schema: pa.Schema, task_index: int) -> PageOutput:
        assert task.job is not None, "open() with a task transaction() did not run"
        return InsiderPage(task.job, task_index)

    def open_remote(
        self, task: Checked, schema: pa.Schema, task_index: int, context: RunContext
    ) -> PageOutput:
        """On an executor's worker: the task gets a job of its own (delivery within its share
        of the rate limits, its rejects in a part file the client merges)."""
        job = InsiderJob(task, context, reject_part(task.task.reject_file, task_index))
        try:
            return InsiderPage(job, task_index)
        except BaseException:
            job.close()
            raise

    def resume_identity(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What decides which rows go where; tuning (timeouts, limits, retries) may change."""
        keys = (
            "partner_name",
            "endpoint",
            "export_mode",
            "attribute_operation",
            "audience_operation",
            "custom_identifier_fields",
            "trigger_data_stream",
        )
        return {key: config.get(key) for key in keys}
