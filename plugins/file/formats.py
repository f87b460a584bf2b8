"""File formats by name and extension, shared by the file input and output."""

from __future__ import annotations

from pathlib import Path

from arrowbulk.errors import ConfigError

EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def format_of(path: Path, configured: str | None, key: str) -> str:
    """The format named in the config, or the one the extension implies."""
    if configured:
        return configured
    suffixes = [s for s in path.suffixes if s not in {".gz", ".bz2", ".zst"}]
    found = EXTENSIONS.get(suffixes[-1].lower()) if suffixes else None
    if found is None:
        raise ConfigError(
            f"{key}: cannot tell the format of {path.name} from its extension; "
            "set 'format:' (parquet, arrow, csv or jsonl)"
        )
    return found
