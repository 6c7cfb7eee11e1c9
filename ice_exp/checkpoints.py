"""One reader for every torch weight file (analyzers, classifiers, rosinality generators).

torch's own failures name neither the file nor the model ("Unsupported operand 149", an empty
``EOFError()``) and advise re-running with ``weights_only=False``, i.e. running the file's code. Here every
failure is a :class:`CheckpointError` saying which model, which file and what is wrong in plain words;
nothing from a file is ever run; non-finite weights are refused by name instead of loading silently.
"""
from __future__ import annotations

import hashlib
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (recorded for every weight file a run loads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickled torch.save magic number


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
        raise CheckpointError(f"{model}: cannot load {path}: {type(e).__name__}: {e}") from e


def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zips holding ``constants.pkl`` (plain torch.save zips do not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist())


def read_checkpoint(path: str | Path, safe_globals: Sequence[Any] = ()) -> Any:
    """The file's contents on CPU, every floating tensor finite. ``torch.load(weights_only=True)`` rebuilds
    tensors and containers only (plus ``safe_globals``); a TorchScript archive (face-alignment < 1.5
    published FAN so) is opened with ``torch.jit.load``, whose C++ loader rebuilds only tensors and
    TorchScript types, and only its parameters are kept (its methods are never called). Raises
    CheckpointError with the cause only: callers add the file and the model with :func:`located`."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpoint("not found")
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_TORCH_MAGIC))
    if not head:
        raise CheckpointError("the file is empty")
    try:
        if is_torchscript(path):
            data: Any = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            with torch.serialization.safe_globals(list(safe_globals)):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(_cause(head, e)) from None  # torch's text advises weights_only=False
    for name, t in _tensors(data):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"non-finite values in tensor {name}")
    return data


def _cause(head: bytes, error: Exception) -> str:
    """torch.load's failure in plain words, from its message and the file's first bytes."""
    text = str(error)
    if found := re.search(r"GLOBAL ([\w.]+)", text):
        return f"it asks to import {found.group(1)} (code, not weights): refused, nothing from it was run"
    if head.startswith(ZIP_MAGIC) or "PytorchStreamReader" in text:
        return "truncated or corrupt zip archive (a copy cut short or damaged: fetch the file again)"
    if head == LEGACY_TORCH_MAGIC or isinstance(error, EOFError):
        return "truncated or corrupt torch file (the data ends early)"
    return "not a torch file (neither a torch.save zip archive nor a torch pickle)"


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """(dotted name, tensor) of every tensor in nested dicts / lists / tuples."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}.{i}" if prefix else str(i))


def load_state(net: nn.Module, state: Any) -> None:
    """Strictly load the state dict ``state`` into ``net``; a CheckpointError says when it is none, or lists
    the missing, unexpected and misshapen keys."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"holds no state dict (a dict of tensors) but a {type(state).__name__}")
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError("wrong layout for the network: " + "; ".join(
            f"{label} {keys[:8]}{' ...' if len(keys) > 8 else ''} ({len(keys)} in all)"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes))
            if keys))
    net.load_state_dict(state, strict=True)
