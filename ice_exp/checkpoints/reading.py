"""One reader for every torch weight file (analyzers, classifiers, rosinality generators).

torch's own failures name neither the file nor the model ("Unsupported operand 149", an empty
``EOFError()``) and advise re-running with ``weights_only=False``, i.e. running the file's code. Here every
failure is a :class:`CheckpointError` saying which model, which file and what is wrong in plain words;
nothing from a file is ever run (TorchScript archives included, see :mod:`.torchscript`); non-finite weights
are refused by name instead of loading silently. The format is read from the file's first bytes only.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ice_exp.checkpoints.errors import CheckpointError, MissingCheckpoint
from ice_exp.checkpoints.torchscript import is_torchscript, read_torchscript


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (recorded for every weight file a run loads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


ZIP_MAGIC = b"PK\x03\x04"  # a zip's local-file header (torch.save >= 1.6 and TorchScript archives)
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickled torch.save magic number
HEAD_BYTES = len(LEGACY_TORCH_MAGIC)
ZIP_DAMAGED = "truncated or corrupt zip archive (a copy cut short or damaged: fetch the file again)"


def file_format(path: str | Path) -> str:
    """What the file's first bytes say it is: ``zip`` (a local-file header at offset 0), ``torch-legacy``
    (torch's pickled magic number), ``pickle`` (a protocol 2-5 pickle: NVlabs' .pkl) or ``unknown``. Only
    the start counts: an archive embedded further on (which ``zipfile.is_zipfile`` would find) does not."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise CheckpointError("the file is empty")
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == LEGACY_TORCH_MAGIC:
        return "torch-legacy"
    return "pickle" if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") else "unknown"


def read_checkpoint(path: str | Path) -> Any:
    """The file's contents on CPU, every floating tensor finite. ``torch.load(weights_only=True)`` rebuilds
    tensors and containers only (plus ``argparse.Namespace``, which training checkpoints carry and which
    only sets attributes); a TorchScript archive gives {dotted name: tensor} read as data
    (:func:`.torchscript.read_torchscript`). Raises CheckpointError with the cause only: callers add the
    file and the model with :func:`located`."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpoint("not found")
    kind = file_format(path)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise CheckpointError(ZIP_DAMAGED) from None
        if is_torchscript(names):
            data: Any = read_torchscript(path)
        elif not any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
            raise CheckpointError(f"a zip archive but not a torch file (no data.pkl among {sorted(names)[:5]}): "
                                  f"not written by torch.save")
        else:
            data = _torch_load(path)
    elif kind == "torch-legacy":
        data = _torch_load(path)
    elif kind == "pickle":
        raise CheckpointError("a plain Python pickle, not a torch.save file (a StyleGAN .pkl goes to generator.path)")
    else:
        raise CheckpointError("not a torch file (its first bytes begin neither a zip archive nor a torch pickle)")
    for name, t in _tensors(data):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"non-finite values in tensor {name}")
    return data


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(_cause(e)) from None  # torch's text advises weights_only=False


def _cause(error: Exception) -> str:
    """torch.load's failure on a file that starts as a torch file, in plain words."""
    text = str(error)
    if found := re.search(r"GLOBAL ([\w.]+)", text):
        return f"it asks to import {found.group(1)} (code, not weights): refused, nothing from it was run"
    if "PytorchStreamReader" in text or "zip" in text.lower():
        return ZIP_DAMAGED
    return "truncated or corrupt torch file (the data ends early or is damaged)"


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
        raise CheckpointError(_not_a_state_dict(state))
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


# top-level keys that say what else a torch file is
FOREIGN_LAYOUTS = {"g_ema": "a rosinality StyleGAN2 generator checkpoint (its 'g_ema'): give it to generator.path",
                   "G_ema": "a StyleGAN2 generator (its 'G_ema'): give it to generator.path",
                   "state_dict": "a training record around a 'state_dict'"}


def _not_a_state_dict(state: Any) -> str:
    if isinstance(state, dict):
        known = next((text for key, text in FOREIGN_LAYOUTS.items() if key in state), None)
        keys = f"keys {sorted(map(str, state))[:6]}"
        return f"this is {known}, not this network's weights ({keys})" if known else \
            f"holds no state dict (a dict of tensors) but a dict with {keys}"
    return f"holds no state dict (a dict of tensors) but a {type(state).__name__}"
