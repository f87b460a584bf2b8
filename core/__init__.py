"""arrowbulk: Embulk-style bulk export of Arrow record batches, with pluggy plugins.

Plugin authors need only this module: ``hookimpl`` to mark the registration hooks, and the
base classes an input or output implements.
"""

from arrowbulk.errors import ArrowbulkError, ConfigError, JobError, RecordError, SchemaError
from arrowbulk.hookspecs import hookimpl
from arrowbulk.secret import Secret
from arrowbulk.spi import (
    Command,
    Control,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    RecordCheck,
    RunContext,
    TaskReport,
)

__version__ = "0.1.0"

__all__ = [
    "ArrowbulkError",
    "Command",
    "ConfigError",
    "Control",
    "InputPlugin",
    "JobError",
    "OutputPlugin",
    "PageOutput",
    "RecordCheck",
    "RecordError",
    "RunContext",
    "SchemaError",
    "Secret",
    "TaskReport",
    "__version__",
    "hookimpl",
]
