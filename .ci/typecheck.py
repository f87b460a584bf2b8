"""Run mypy on the package as it is installed (arrowbulk, arrowbulk.plugins, ...).

The repo keeps short folders (core/, plugins/, schemas/) that pyproject maps to import names
under ``arrowbulk``; mypy reads source folders, not that mapping, and stays silent about
installed packages. So this script lays the same mapping out as links in a scratch folder and
runs mypy there.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        package = Path(scratch) / "arrowbulk"
        package.mkdir()
        for source in (ROOT / "core").iterdir():
            if source.suffix in {".py", ".typed"}:
                (package / source.name).symlink_to(source)
        (package / "plugins").symlink_to(ROOT / "plugins", target_is_directory=True)
        command = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(Path(scratch) / ".mypy_cache"),
            "-p",
            "arrowbulk",
        ]
        return subprocess.call(command, cwd=scratch)


if __name__ == "__main__":
    sys.exit(main())
