"""Criterion interface: an image -> named flat outputs ("parts") that a run activates or suppresses.

A criterion is evaluated twice per sample: ``prepare`` once on the base frame, without gradients, to fix
the constants the seed treats as constants inside the Jacobian (hard masks, bounding boxes,
triangulations); then ``forward`` inside every Jacobian pass. ``forward`` must be a pure tensor function
of the frame (no ``.item()``, no data-dependent Python branches) so that it works under ``torch.func``
transforms (vmap over VJPs / JVPs).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ice_exp.generators.base import Frame

State = dict[str, Any]


class Criterion(nn.Module):
    """Subclasses set ``parts`` and implement ``prepare`` and ``forward``."""

    parts: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # the analyzers (Analyzers fields) its constructor takes; configs give the rest

    def prepare(self, frame: Frame) -> State:
        """Constants of the base frame (called under no_grad)."""
        return {}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        """Each part flattened to [B, m_part]."""
        raise NotImplementedError

    def check_part(self, part: str, key: str = "part") -> str:
        if part not in self.parts:
            raise ValueError(f"{key}: criterion {type(self).__name__} has no part {part!r}; allowed values: {', '.join(self.parts)}")
        return part


class EmptyMask(ValueError):
    """A criterion's region is empty on a sample: fatal in accumulation, a skipped sample in evaluation."""


def check_nonempty(mask: Tensor, what: str) -> None:
    """Empty masks make a criterion silently vanish: fail with the sample and region instead."""
    areas = mask.flatten(1).sum(1)
    empty = torch.nonzero(areas == 0).flatten().tolist()
    if empty:
        raise EmptyMask(f"{what}: mask is empty on batch item(s) {empty}; choose other regions or a smaller erosion")


def bbox_of(mask: Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the union over the batch, bottom/right exclusive."""
    union = mask.flatten(0, 1).amax(0) > 0
    rows = torch.nonzero(union.any(1)).flatten()
    cols = torch.nonzero(union.any(0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

