"""arrowbulk: Embulk-style bulk export of Arrow record batches, with pluggy plugins.

Plugin authors need only this module: ``hookimpl`` to mark the registration hooks, and the
base classes an input or output implements.
"""

from arrowbulk.arrow_types import children, decode, plain_type, yes_no
from arrowbulk.batches import rebatch
from arrowbulk.cancel import Cancellation, Interrupted
from arrowbulk.config import checked_secret
from arrowbulk.digest import file_digest
from arrowbulk.errors import (
    ArrowbulkError,
    AuthError,
    ConfigError,
    JobError,
    RecordError,
    SchemaError,
)
from arrowbulk.executor import ExecutorPlugin, RemoteTask, TaskBoard, TaskOutcome
from arrowbulk.hookspecs import hookimpl
from arrowbulk.incremental import Incremental
from arrowbulk.jsonable import NotJson, jsonable, non_finite
from arrowbulk.rejects import RejectWriteError, RejectWriter, source_record
from arrowbulk.resources import load_schema
from arrowbulk.secret import Secret
from arrowbulk.spi import (
    Command,
    Control,
    DryRun,
    FilterPlugin,
    FilterReject,
    FilterValueError,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    RecordCheck,
    Reporter,
    RunContext,
    SetAside,
    TaskReport,
)
from arrowbulk.writable import check_writable_folder, write_atomically

__version__ = "0.1.0"

# The Python API (imported last: it needs the whole host).
from arrowbulk.api import run

__all__ = [
    "ArrowbulkError",
    "AuthError",
    "Cancellation",
    "Command",
    "ConfigError",
    "Control",
    "DryRun",
    "ExecutorPlugin",
    "FilterPlugin",
    "FilterReject",
    "FilterValueError",
    "Incremental",
    "InputPlugin",
    "Interrupted",
    "JobError",
    "NotJson",
    "OutputPlugin",
    "PageOutput",
    "RecordCheck",
    "RecordError",
    "RejectWriteError",
    "RejectWriter",
    "RemoteTask",
    "Reporter",
    "RunContext",
    "SchemaError",
    "Secret",
    "SetAside",
    "TaskBoard",
    "TaskOutcome",
    "TaskReport",
    "__version__",
    "check_writable_folder",
    "checked_secret",
    "children",
    "decode",
    "file_digest",
    "hookimpl",
    "jsonable",
    "load_schema",
    "non_finite",
    "plain_type",
    "rebatch",
    "run",
    "source_record",
    "write_atomically",
    "yes_no",
]
