"""Files written whole or not at all: a reader never sees half a file, and a killed writer never leaves one."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path`` (named after this process, so concurrent writers
    never share one), which then replaces ``path`` in one rename; a failed write leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def update_json(path: Path, values: dict[str, Any]) -> None:
    """Merge ``values`` into the JSON object at ``path`` (created when missing)."""
    write_json(path, {**(json.loads(path.read_text()) if path.is_file() else {}), **values})
