"""arrowbulk: Embulk-style bulk export of Arrow record batches, with pluggy plugins.

Plugin authors need only this module: ``hookimpl`` to mark the registration hooks, and the
base classes an input or output implements.
"""

from arrowbulk.cancel import Cancellation, Interrupted
from arrowbulk.digest import file_digest
from arrowbulk.errors import (
    ArrowbulkError,
    AuthError,
    ConfigError,
    JobError,
    RecordError,
    SchemaError,
)
from arrowbulk.hookspecs import hookimpl
from arrowbulk.secret import Secret
from arrowbulk.spi import (
    Command,
    Control,
    FilterPlugin,
    FilterValueError,
    InputPlugin,
    OutputPlugin,
    PageOutput,
    RecordCheck,
    Reporter,
    RunContext,
    TaskReport,
)

__version__ = "0.1.0"

__all__ = [
    "ArrowbulkError",
    "AuthError",
    "Cancellation",
    "Command",
    "ConfigError",
    "Control",
    "FilterPlugin",
    "FilterValueError",
    "InputPlugin",
    "Interrupted",
    "JobError",
    "OutputPlugin",
    "PageOutput",
    "RecordCheck",
    "RecordError",
    "Reporter",
    "RunContext",
    "SchemaError",
    "Secret",
    "TaskReport",
    "__version__",
    "file_digest",
    "hookimpl",
]
