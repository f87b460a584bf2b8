"""Finding plugins: the ``arrowbulk`` entry-point group, built-ins included.

Built-in plugins are entry points of the arrowbulk distribution itself, so they are found,
listed and overridden exactly like an installed package. A plugin module that fails to import
becomes a warning naming it (and a line in ``arrowbulk plugins``), not a crash of the host.
``ARROWBULK_PLUGINS=name,name`` restricts which entry points load, so tests and careful users
do not pick up whatever happens to be installed.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pluggy

from arrowbulk import hookspecs
from arrowbulk.errors import ConfigError
from arrowbulk.executor import ExecutorPlugin, LocalExecutor
from arrowbulk.spi import Command, FilterPlugin, InputPlugin, OutputPlugin, PluginBase

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "arrowbulk"
ONLY_ENV = "ARROWBULK_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin type, as ``arrowbulk plugins`` lists it."""

    kind: str
    name: str
    cls: type[PluginBase]
    entry_point: str
    distribution: str | None
    version: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "entry_point": self.entry_point,
            "distribution": self.distribution,
            "version": self.version,
        }


@dataclass
class Registry:
    """Every input and output type the host can run, by ``type:`` name."""

    inputs: dict[str, PluginInfo] = field(default_factory=dict)
    outputs: dict[str, PluginInfo] = field(default_factory=dict)
    filters: dict[str, PluginInfo] = field(default_factory=dict)
    executors: dict[str, PluginInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)

    def input_class(self, name: str) -> type[InputPlugin]:
        return cast(type[InputPlugin], self._find(self.inputs, name, "in").cls)

    def output_class(self, name: str) -> type[OutputPlugin[Any]]:
        return cast(type[OutputPlugin[Any]], self._find(self.outputs, name, "out").cls)

    def executor_class(self, name: str) -> type[ExecutorPlugin]:
        if name in self.executors:
            return cast(type[ExecutorPlugin], self.executors[name].cls)
        known = ", ".join(sorted(self.executors)) or "none"
        hint = f"; it failed to load: {self.failures[name]}" if name in self.failures else ""
        raise ConfigError(f"exec.type: no executor named {name!r} (installed: {known}){hint}")

    def filter_class(self, name: str, where: str) -> type[FilterPlugin]:
        if name in self.filters:
            return cast(type[FilterPlugin], self.filters[name].cls)
        known = ", ".join(sorted(self.filters)) or "none"
        raise ConfigError(f"{where}.type: no filter plugin named {name!r} (installed: {known})")

    def _find(self, table: dict[str, PluginInfo], name: str, section: str) -> PluginInfo:
        if name in table:
            return table[name]
        known = ", ".join(sorted(table)) or "none"
        hint = ""
        if name in self.failures:
            hint = f"; the plugin '{name}' is installed but failed to load: {self.failures[name]}"
        raise ConfigError(
            f"{section}.type: no {section}put plugin named {name!r} (installed: {known}){hint}; "
            "install the package that provides it, or check the spelling"
        )

    def with_input(self, cls: type[InputPlugin]) -> Registry:
        """A copy that also knows the input ``cls`` (the host's own, such as retry's reader)."""
        info = PluginInfo("input", cls.type_name, cls, "", "arrowbulk", None)
        return Registry(
            {**self.inputs, cls.type_name: info},
            dict(self.outputs),
            dict(self.filters),
            dict(self.executors),
            dict(self.failures),
            dict(self.commands),
        )

    def as_json(self) -> list[dict[str, Any]]:
        tables = [
            *self.inputs.values(),
            *self.filters.values(),
            *self.outputs.values(),
            *self.executors.values(),
        ]
        rows = [info.as_json() for info in tables]
        rows += [
            {"kind": "failed", "name": name, "error": error}
            for name, error in sorted(self.failures.items())
        ]
        return sorted(rows, key=lambda row: (row["kind"], row["name"]))


def plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def load_registry(only: set[str] | None = None, extra: Sequence[object] = ()) -> Registry:
    """Load the entry points (all, or those named in ``only`` / ``$ARROWBULK_PLUGINS``).

    ``extra`` plugin objects (modules or instances with hook implementations) are registered
    too, before the entry points, for programs that embed arrowbulk and for tests.
    """
    if only is None and os.environ.get(ONLY_ENV):
        only = {name.strip() for name in os.environ[ONLY_ENV].split(",") if name.strip()}
    manager = plugin_manager()
    registry = Registry()
    sources: dict[str, metadata.EntryPoint] = {}
    for plugin in extra:
        _register_guarded(manager, registry, plugin, getattr(plugin, "__name__", repr(plugin)))
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if only is not None and entry_point.name not in only:
            continue
        if manager.has_plugin(entry_point.name):
            continue  # the same distribution seen twice on sys.path
        try:
            module = entry_point.load()
        except Exception as error:  # any import failure of foreign code must not stop the host
            _fail(registry, entry_point.name, f"failed to load: {type(error).__name__}: {error}")
            continue
        if _register_guarded(manager, registry, module, entry_point.name):
            sources[module.__name__] = entry_point

    def register_into(table: dict[str, PluginInfo], kind: str, base: type) -> Any:
        def register(cls: type[PluginBase]) -> None:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"register() takes a subclass of {base.__name__}, got {cls!r}")
            name = cls.type_name
            if name in table:
                # Hooks run last-registered first and built-ins are trylast, so the first
                # registration is the one a user installed on purpose.
                log.info("%s plugin %r from %s is shadowed", kind, name, cls.__module__)
                return
            table[name] = _info(kind, cls, sources)

        return register

    def register_command(command: Command) -> None:
        registry.commands.setdefault(command.name, command)

    _call_guarded(
        manager,
        registry,
        "register_input_plugins",
        register_into(registry.inputs, "input", InputPlugin),
    )
    _call_guarded(
        manager,
        registry,
        "register_output_plugins",
        register_into(registry.outputs, "output", OutputPlugin),
    )
    _call_guarded(
        manager,
        registry,
        "register_filter_plugins",
        register_into(registry.filters, "filter", FilterPlugin),
    )
    _call_guarded(
        manager,
        registry,
        "register_executor_plugins",
        register_into(registry.executors, "executor", ExecutorPlugin),
    )
    _call_guarded(manager, registry, "register_commands", register_command)
    # The host's own threads: always there, whatever entry points load.
    registry.executors.setdefault(
        LocalExecutor.type_name,
        PluginInfo("executor", LocalExecutor.type_name, LocalExecutor, "", "arrowbulk", None),
    )
    return registry


def _register_guarded(
    manager: pluggy.PluginManager, registry: Registry, plugin: object, name: str
) -> bool:
    """Register one plugin; whatever is wrong with it becomes a failure row and a warning."""
    try:
        manager.register(plugin, name=name)
        manager.check_pending()  # a @hookimpl whose name no hookspec has: a misspelling
    except pluggy.PluginValidationError as error:
        if manager.is_registered(plugin):
            manager.unregister(plugin)
        _fail(registry, name, f"invalid hook: {error}")
        return False
    if not manager.get_hookcallers(plugin):
        log.warning(
            "plugin %r registers nothing: no function marked @hookimpl with a hook's name "
            "(register_input_plugins, register_filter_plugins, register_output_plugins, "
            "register_executor_plugins, register_commands)",
            name,
        )
        registry.failures[name] = "registers nothing (no @hookimpl with a hook's name)"
    return True


def _call_guarded(
    manager: pluggy.PluginManager, registry: Registry, hook: str, register: Any
) -> None:
    """Call each plugin's implementation of ``hook`` alone: one that raises is reported, and the
    others still register. Order as pluggy's: last registered first, ``trylast`` ones last."""
    for implementation in reversed(getattr(manager.hook, hook).get_hookimpls()):
        try:
            implementation.function(register=register)
        except Exception as error:  # foreign code: a failure row, never a crash of the CLI
            _fail(
                registry,
                implementation.plugin_name,
                f"{hook} failed: {type(error).__name__}: {error}",
            )


def _fail(registry: Registry, name: str, problem: str) -> None:
    registry.failures[name] = problem
    log.warning("plugin %r is skipped: %s", name, problem)


def _info(kind: str, cls: type[PluginBase], sources: dict[str, metadata.EntryPoint]) -> PluginInfo:
    module = cls.__module__
    entry_point = next(
        (ep for name, ep in sources.items() if module == name or module.startswith(name + ".")),
        None,
    )
    dist = entry_point.dist if entry_point is not None else None
    return PluginInfo(
        kind=kind,
        name=cls.type_name,
        cls=cls,
        entry_point=entry_point.name if entry_point is not None else "",
        distribution=dist.metadata["Name"] if dist is not None else None,
        version=dist.version if dist is not None else None,
    )
