"""Find, fingerprint and load pretrained analyzer weights, never downloading anything.

The real analyzers (BiSeNet / ParseNet, FAN, ArcFace) need published weight files that cannot be fetched
from inside a run (no network on compute nodes, and a silent download would hide which bytes a result
came from). A :class:`WeightSpec` names the expected file(s), the folders where the owning package caches
them and the published URL; :func:`resolve_weights` returns an existing file or raises one
:class:`~ice_exp.checkpoints.MissingCheckpoint` (a ``FileNotFoundError``) that says exactly what to download
and where to put it; the file is read by :func:`ice_exp.checkpoints.read_checkpoint`. Runs record
:meth:`Pretrained.weight_checksums` so every number traces back to exact bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ice_exp.checkpoints import MissingCheckpoint, load_state, located, read_checkpoint, sha256_of


def facexlib_weights_dir() -> Path:
    """Where facexlib's ``init_parsing_model`` caches its files: ``<facexlib package>/weights``."""
    import facexlib

    return Path(facexlib.__file__).parent / "weights"


def torch_hub_checkpoints() -> Path:
    """Where face-alignment (and torch.hub) cache files: ``torch.hub.get_dir()/checkpoints`` ($TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


# Package cache folders by name, looked up when a file is resolved (tests point them elsewhere).
CACHE_DIRS: dict[str, Callable[[], Path]] = {"facexlib": facexlib_weights_dir, "torch_hub": torch_hub_checkpoints}


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: what it is, its accepted names, the package caches to search, its URL."""

    what: str
    file_names: tuple[str, ...]  # first = the current published name; paths relative to a cache folder
    caches: tuple[str, ...]  # keys of CACHE_DIRS
    url: str


def resolve_weights(spec: WeightSpec, path: str | Path | None = None) -> Path:
    """An existing weight file: ``path`` itself (a file, or a folder holding one of the expected names),
    else the first expected name found in the package cache folders. Raises ``MissingCheckpoint`` naming
    the expected file, every folder searched and the published URL; nothing is ever downloaded."""
    if path is not None and Path(path).expanduser().is_file():
        return Path(path).expanduser()
    folders = [Path(path).expanduser()] if path is not None else [CACHE_DIRS[cache]() for cache in spec.caches]
    for folder in folders:
        for name in spec.file_names:
            if (folder / name).is_file():
                return folder / name
    raise MissingCheckpoint(
        f"{spec.what}: weight file {spec.file_names[0]!r} not found "
        f"(accepted names: {', '.join(spec.file_names)}; searched: {', '.join(map(str, folders))}). "
        f"It is published at {spec.url} ; put it in one of the searched folders or pass its location as "
        f"`path`. ice-exp never downloads weights itself."
    )


class Pretrained(nn.Module):
    """Mixin for analyzers wrapping a frozen pretrained network held in ``self.net``.

    The network stays in eval mode whatever ``train()`` is called with (BatchNorm must use its running
    statistics inside every Jacobian pass) and its parameters never require gradients."""

    weight_path: Path | None = None

    def load_weights(self, spec: WeightSpec, path: str | Path | None) -> None:
        """Resolve and strictly load ``spec`` into ``self.net`` (key names must match exactly)."""
        self.weight_path = resolve_weights(spec, path)
        with located(self.weight_path, spec.what):
            load_state(self.net, read_checkpoint(self.weight_path))

    def freeze(self) -> None:
        """Constant weights in eval mode; subclasses call it once ``self.net`` exists."""
        self.net.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "Pretrained":
        return super().train(False)

    def weight_checksums(self) -> dict[str, str]:
        """{weight file: sha256}, empty for randomly initialised networks (tests)."""
        return {} if self.weight_path is None else {str(self.weight_path): sha256_of(self.weight_path)}
