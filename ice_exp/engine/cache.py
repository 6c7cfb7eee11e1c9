"""Per-sample Gram matrices on disk (safetensors), so that a repeated or interrupted run skips finished work.

Layout: ``<cache_dir>/<run key>/<sample key>.safetensors``, one file per sample holding every term's
JᵀJ. The run key hashes everything that decides the matrices except the sample: the generator's and the
criteria's weights (every state-dict tensor, so retrained or differently seeded models never collide),
their other settings (every submodule's plain attributes: toyface's resolution, a layer's noise mode;
the analyzers' input side, mask and heatmap modes), the code that
computes them (``source_hash``: an edited renderer or criterion never reads the old code's Grams), the
space, the terms (criterion configs and parts; not the ratios, which only the solver reads) and the
engine options that change the result (precision and the low-rank options; mode and chunk give the same
matrices to rounding). The sample key
hashes z's bytes. Files are written to a temporary name and renamed (atomic on POSIX), so a run killed
mid-write leaves either the whole file or none; the sums are rebuilt from the files, which is what makes
a resumed run end with exactly the same result as an uninterrupted one.

Every file carries the sha256 of its tensors in its safetensors metadata. ``load`` verifies an entry
(readable, checksum, the expected term names, square [D, D], all finite); a bad one (a full disk, a
copy cut short, a bit flip, a NaN from a crashed writer) is moved aside as ``<name>.bad-<time>``,
named in one warning, and its sample is recomputed: a damaged cache heals instead of failing every rerun.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ice_exp.common.files import atomic_write

log = logging.getLogger(__name__)


def state_hash(*modules: nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes) of the modules, in order."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode() + _tensor_bytes(tensor))
    return digest.hexdigest()


SOURCES = ("generators", "world", "criteria", "analyzers", "engine", "common/images.py", "common/face_parts.py")  # of ice_exp/


@functools.cache
def source_hash() -> str:
    """sha256 over the files of SOURCES: the code that renders, analyses and differentiates."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(f for name in SOURCES for f in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name]))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def module_settings(*modules: nn.Module) -> dict[str, Any]:
    """Every submodule's plain attributes (numbers, strings, flags, tuples, lists), by module and name:
    what changes a module's output besides its state dict."""
    plain = (bool, int, float, str, tuple, list, type(None))
    return {f"{i}.{name}.{attr}": value for i, module in enumerate(modules) for name, sub in module.named_modules()
            for attr, value in vars(sub).items() if not attr.startswith("_") and attr != "training" and isinstance(value, plain)}


def key_of(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts (tensors by their bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(_tensor_bytes(part) if isinstance(part, Tensor) else json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in name order: the cache files' checksum."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + _tensor_bytes(tensors[name]))
    return digest.hexdigest()


def _tensor_bytes(tensor: Tensor) -> bytes:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    return f"|{t.dtype}|{tuple(tensor.shape)}|".encode() + t.view(torch.uint8).numpy().tobytes()


class GramCache:
    """Directory of per-sample Gram files for one run key (see module docstring). ``names`` (the terms)
    and ``dim`` (D), when given, are what every entry must hold."""

    def __init__(self, root: str | Path, run_key: str, description: dict[str, Any] | None = None,
                 names: Sequence[str] | None = None, dim: int | None = None) -> None:
        self.dir = Path(root).expanduser() / run_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names, self.dim = (sorted(names) if names is not None else None), dim
        if description is not None and not (self.dir / "key.json").exists():
            atomic_write(self.dir / "key.json", lambda p: p.write_text(json.dumps(description, indent=2, default=str)))

    def path(self, z: Tensor) -> Path:
        return self.dir / f"{key_of(z)}.safetensors"

    def load(self, z: Tensor) -> dict[str, Tensor] | None:
        """The sample's Grams, or None when it was never finished or its file is bad (then set aside)."""
        path = self.path(z)
        if not path.is_file():
            return None
        try:
            return self._verified(path)
        except ValueError as e:
            aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            log.warning("Gram cache: %s is bad (%s); moved to %s, the sample is recomputed", path, e, aside.name)
            return None

    def _verified(self, path: Path) -> dict[str, Tensor]:
        """The file's tensors; ValueError saying what is wrong unless every check passes."""
        try:
            with safe_open(str(path), "pt") as f:
                checksum = (f.metadata() or {}).get("sha256")
                grams = {name: f.get_tensor(name) for name in f.keys()}
        except Exception as e:  # safetensors raises SafetensorError / OSError on cut or garbage files
            raise ValueError(f"unreadable: {type(e).__name__}: {e}") from e
        if checksum != tensors_sha256(grams):
            raise ValueError("no sha256 in its metadata" if checksum is None else "sha256 does not match its tensors")
        if self.names is not None and sorted(grams) != self.names:
            raise ValueError(f"terms {sorted(grams)}, expected {self.names}")
        side = self.dim or "D"
        for name, g in grams.items():
            if g.dim() != 2 or g.shape[0] != g.shape[1] or g.shape[0] != (self.dim or g.shape[0]):
                raise ValueError(f"{name} has shape {list(g.shape)}, expected a square [{side}, {side}]")
            if not bool(torch.isfinite(g).all()):
                raise ValueError(f"{name} has non-finite values")
        return grams

    def save(self, z: Tensor, grams: dict[str, Tensor]) -> None:
        tensors = {name: g.detach().cpu().contiguous() for name, g in grams.items()}
        metadata = {"sha256": tensors_sha256(tensors)}
        atomic_write(self.path(z), lambda p: save_file(tensors, str(p), metadata=metadata))


