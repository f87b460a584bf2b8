"""Which files an input path names, and the Hive partitions their folders encode.

- A directory is read recursively; a glob as written (``**`` for any depth).
- Names starting with ``_`` or ``.`` are skipped at every level below the given path: Spark's
  and Hadoop's ``_SUCCESS``, ``_metadata``, ``_temporary/`` and ``.part-0.crc`` files are not
  data. A file named explicitly is always read.
- Hive partitions: a folder ``key=value`` between the given path and a file makes ``key`` a
  column of that file's rows (text: ``01`` stays ``01``; ``%2F``-style escapes decoded;
  ``__HIVE_DEFAULT_PARTITION__`` is null). ``hive_partitioning: false`` turns it off. Every
  file of one input must have the same partition keys.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from arrowbulk import ConfigError

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class Found:
    path: Path
    partitions: tuple[tuple[str, str | None], ...] = ()


def find_files(patterns: list[str], resolve: object, hive: bool) -> list[Found]:
    """Every data file the patterns name, in a stable order."""
    assert callable(resolve)
    found: list[Found] = []
    for pattern in patterns:
        resolved: Path = resolve(pattern)
        if resolved.is_dir():
            found += [_found(p, resolved, hive) for p in _walk(resolved)]
        elif glob.has_magic(str(resolved)):
            base = _glob_base(resolved)
            matches = sorted(Path(p) for p in glob.glob(str(resolved), recursive=True))
            found += [
                _found(p, base, hive) for p in matches if p.is_file() and not _hidden(p, base)
            ]
        elif resolved.is_file():
            found.append(Found(resolved))
        else:
            raise ConfigError(f"in.path: {pattern} does not exist (looked for {resolved})")
    if not found:
        raise ConfigError(
            f"in.path: no files match {patterns} (names starting with '_' or '.' are skipped)"
        )
    _check_same_keys(found)
    return found


def _walk(root: Path) -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(("_", ".")))
        files += [Path(folder) / n for n in sorted(names) if not n.startswith(("_", "."))]
    return files


def _glob_base(pattern: Path) -> Path:
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts)


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in path.relative_to(base).parts)


def _found(path: Path, root: Path, hive: bool) -> Found:
    if not hive:
        return Found(path)
    partitions = []
    for part in path.relative_to(root).parts[:-1]:
        key, equals, value = part.partition("=")
        if equals and key:
            text = unquote(value)
            partitions.append((unquote(key), None if text == HIVE_NULL else text))
    return Found(path, tuple(partitions))


def _check_same_keys(found: list[Found]) -> None:
    first = [k for k, _ in found[0].partitions]
    for item in found[1:]:
        keys = [k for k, _ in item.partitions]
        if keys != first:
            raise ConfigError(
                f"in.path: {item.path} has the Hive partitions {keys or 'none'}, but "
                f"{found[0].path} has {first or 'none'}; every file needs the same keys "
                "(or set in.hive_partitioning: false)"
            )
