"""Pixel coordinates under the convention of :class:`~ice_exp.analyzers.base.Landmarker` (pixel centres at
integers, an image of side R spans [-0.5, R - 0.5]), shared by landmark models and criteria."""
from __future__ import annotations

from torch import Tensor


def rescale_points(points: Tensor, source: int, target: int) -> Tensor:
    """Points on a square grid of side ``source`` -> the same points on side ``target`` (same square)."""
    return (points + 0.5) * (target / source) - 0.5
