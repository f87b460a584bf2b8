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

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pyarrow as pa

from arrowbulk import Control, OutputPlugin, PageOutput, RecordCheck, RunContext, load_schema

# Kept importable from here: tests and tools build batches the way the plugin does.
from arrowbulk.plugins.insider.job import (  # noqa: F401
    Checked,
    InsiderJob,
    check_job,
    prepare_batch,
    prepare_columns,
)
from arrowbulk.plugins.insider.page import InsiderPage
from arrowbulk.plugins.insider.record_checks import InsiderDryRun, InsiderRecordCheck


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
        job = InsiderJob(checked, control.context)
        try:
            control.run(replace(checked, job=job))
        finally:
            job.close()
        return {}

    def open(self, task: Checked, schema: pa.Schema, task_index: int) -> PageOutput:
        assert task.job is not None, "open() with a task transaction() did not run"
        return InsiderPage(task.job, task_index)

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
