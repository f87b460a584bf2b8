"""The plugin contract: what a package implements to add inputs and outputs to arrowbulk.

Hooks only *find* plugins; the work is done by objects of the base classes in
:mod:`arrowbulk.spi`. A plugin module implements one or both hooks and is named in the
``arrowbulk`` entry-point group of its distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from arrowbulk.executor import ExecutorPlugin
    from arrowbulk.spi import Command, FilterPlugin, InputPlugin, OutputPlugin

PROJECT_NAME = "arrowbulk"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_input_plugins(register: Callable[[type[InputPlugin]], None]) -> None:
    """Fires once, when the host loads plugins; call ``register(cls)`` for each input type.

    ``cls`` is a subclass of :class:`arrowbulk.spi.InputPlugin`; its ``type_name`` is the
    name a config uses under ``in: {type: ...}``.
    """


@hookspec
def register_output_plugins(register: Callable[[type[OutputPlugin[Any]]], None]) -> None:
    """Fires once, when the host loads plugins; call ``register(cls)`` for each output type.

    ``cls`` is a subclass of :class:`arrowbulk.spi.OutputPlugin`; its ``type_name`` is the
    name a config uses under ``out: {type: ...}``.
    """


@hookspec
def register_filter_plugins(register: Callable[[type[FilterPlugin]], None]) -> None:
    """Fires once, when the host loads plugins; call ``register(cls)`` for each filter type.

    ``cls`` is a subclass of :class:`arrowbulk.spi.FilterPlugin`; its ``type_name`` is the
    name a config uses in ``filters: [{type: ...}]``.
    """


@hookspec
def register_executor_plugins(register: Callable[[type[ExecutorPlugin]], None]) -> None:
    """Fires once, when the host loads plugins; call ``register(cls)`` for each executor.

    ``cls`` is a subclass of :class:`arrowbulk.executor.ExecutorPlugin`; its ``type_name``
    is the name a config uses under ``exec: {type: ...}``.
    """


@hookspec
def register_commands(register: Callable[[Command], None]) -> None:
    """Fires once, when the CLI starts; call ``register(command)`` to add a subcommand.

    ``command`` is an :class:`arrowbulk.spi.Command`: a name, a help line, a function that
    adds its arguments to an ``argparse`` parser and one that runs it and returns an exit code.
    """
