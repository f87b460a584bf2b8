"""The errors arrowbulk expects, each mapped to an exit code by the CLI.

An expected error carries a message written for the person running the job; the CLI prints
that message alone (no traceback unless ``--debug``).
"""

from __future__ import annotations


class ArrowbulkError(Exception):
    """Base of every error the host and plugins raise on purpose."""

    exit_code = 1


class ConfigError(ArrowbulkError):
    """The configuration is wrong: a key is missing, mistyped or out of range (exit code 2)."""

    exit_code = 2


class SchemaError(ArrowbulkError):
    """The input's columns cannot be used by the output (names, types, required columns)."""

    exit_code = 2


class RecordError(ArrowbulkError):
    """A record is invalid and the job was told not to skip invalid records."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        #: the rule it broke, for the summary's count of rejections by reason
        self.reason = reason


class JobError(ArrowbulkError):
    """The job could not finish: the destination refused it, retries ran out, a file vanished."""


class AuthError(JobError):
    """The destination refused the credentials; nothing more is sent."""
