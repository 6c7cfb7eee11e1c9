"""The errors of every weight-file reader, and :func:`located`, which names the model and the file in them."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class CheckpointError(ValueError):
    """A weight file that is missing, corrupt, truncated, of an unknown format, of a mismatched layout,
    non-finite, or that asks to run code. No partial model is ever returned with it."""


class MissingCheckpoint(CheckpointError, FileNotFoundError):
    """A weight file that does not exist; the message says where to get it and where to put it."""


@contextmanager
def located(path: str | Path, model: str) -> Iterator[None]:
    """Every failure inside becomes a CheckpointError naming ``model`` and ``path``."""
    try:
        yield
    except CheckpointError as e:
        raise type(e)(f"{model}: cannot load {path}: {e}") from e.__cause__
    except Exception as e:  # anything else is a file we cannot use: no partial model escapes
        raise CheckpointError(f"{model}: cannot load {path}: {described(e)}") from e


def described(error: BaseException) -> str:
    """``Type: text``, or ``Type (no message)`` for errors raised without text (a bare MemoryError)."""
    return f"{type(error).__name__}: {error}" if str(error) else f"{type(error).__name__} (no message)"
