"""Where the trained networks are kept and under which key: a hash of everything that decides the weights
(settings, data, and the source code that makes the data and the network), so that any change to them
trains afresh instead of reusing a stale file."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any


def cache_root() -> Path:
    """``$ICE_EXP_CACHE`` (default ``~/.cache/ice-exp``)."""
    return Path(os.environ.get("ICE_EXP_CACHE", "~/.cache/ice-exp")).expanduser()


def code_fingerprint(modules: Iterable[ModuleType]) -> str:
    """sha256 of the modules' source, in order."""
    return hashlib.sha256("".join(inspect.getsource(m) for m in modules).encode()).hexdigest()[:16]


def cache_key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
