"""The built-in plugins use arrowbulk's public SDK alone: what a third-party plugin can use."""

from __future__ import annotations

import ast
from pathlib import Path

import arrowbulk

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
#: The sandbox's ``--run`` runs the whole CLI in-process: the host itself, on purpose.
ALLOWED_HOST_MODULES = {("insider/sandbox_cli.py", "arrowbulk.cli")}


def host_imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("arrowbulk"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("arrowbulk")]
    return found


def test_the_built_in_plugins_import_only_the_public_sdk() -> None:
    offending = []
    for path in sorted(PLUGINS.rglob("*.py")):
        where = str(path.relative_to(PLUGINS))
        for module, names in host_imports(path):
            if module.startswith("arrowbulk.plugins") or (where, module) in ALLOWED_HOST_MODULES:
                continue
            if module != "arrowbulk":
                offending.append(f"{where}: from {module} import ...")
                continue
            missing = [n for n in names if n not in arrowbulk.__all__]
            if missing:
                offending.append(f"{where}: {', '.join(missing)} are not in arrowbulk.__all__")
    assert offending == []


def test_every_public_name_is_importable() -> None:
    for name in arrowbulk.__all__:
        assert getattr(arrowbulk, name) is not None, name
