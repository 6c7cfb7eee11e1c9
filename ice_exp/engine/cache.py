"""Per-sample Gram matrices on disk (safetensors), so that a repeated or interrupted run skips finished work.

Layout: ``<cache_dir>/<run key>/<sample key>.safetensors``, one file per sample holding every term's
JᵀJ. The run key hashes everything that decides the matrices except the sample: the generator's and the
criteria's weights (every state-dict tensor, so retrained or differently seeded models never collide),
the space, the terms (criterion configs and parts) and the engine options that change the result
(precision and the low-rank options; mode and chunk give the same matrices to rounding). The sample key
hashes z's bytes. Files are written to a temporary name and renamed (atomic on POSIX), so a run killed
mid-write leaves either the whole file or none; the sums are rebuilt from the files, which is what makes
a resumed run end with exactly the same result as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


def state_hash(*modules: nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes) of the modules, in order."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode() + _tensor_bytes(tensor))
    return digest.hexdigest()


def key_of(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts (tensors by their bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(_tensor_bytes(part) if isinstance(part, Tensor) else json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _tensor_bytes(tensor: Tensor) -> bytes:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    return f"|{t.dtype}|{tuple(tensor.shape)}|".encode() + t.view(torch.uint8).numpy().tobytes()


class GramCache:
    """Directory of per-sample Gram files for one run key (see module docstring)."""

    def __init__(self, root: str | Path, run_key: str, description: dict[str, Any] | None = None) -> None:
        self.dir = Path(root) / run_key
        self.dir.mkdir(parents=True, exist_ok=True)
        if description is not None and not (self.dir / "key.json").exists():
            _atomic_write(self.dir / "key.json", lambda p: p.write_text(json.dumps(description, indent=2, default=str)))

    def path(self, z: Tensor) -> Path:
        return self.dir / f"{key_of(z)}.safetensors"

    def load(self, z: Tensor) -> dict[str, Tensor] | None:
        """The sample's Grams, or None when it was never finished."""
        path = self.path(z)
        return load_file(str(path)) if path.is_file() else None

    def save(self, z: Tensor, grams: dict[str, Tensor]) -> None:
        tensors = {name: g.detach().cpu().contiguous() for name, g in grams.items()}
        _atomic_write(self.path(z), lambda p: save_file(tensors, str(p)))


def _atomic_write(path: Path, write: Any) -> None:
    """Write via a temporary file in the same directory, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
