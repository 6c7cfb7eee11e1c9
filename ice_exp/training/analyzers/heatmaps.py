"""Landmark heatmaps: the Gaussian targets FAN is trained on and face-alignment's own hard-argmax decoding.

Both work in a heatmap's pixel frame with pixel centres at integers (analyzers.base.Landmarker); points move
between an image and its heatmap with ``analyzers.points.rescale_points``. The soft-argmax that the project
decodes with is ``analyzers.fan.soft_argmax``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def gaussian_heatmaps(points: Tensor, side: int, sigma: float) -> Tensor:
    """[B, K, side, side] maps with a unit-peak Gaussian of std ``sigma`` px at each point [B, K, 2] (x, y),
    centred at the point itself rather than at its nearest pixel, so the target carries sub-pixel position."""
    grid = torch.arange(side, dtype=points.dtype, device=points.device)
    gx = (grid - points[..., 0, None]).square()  # [B, K, side] over x
    gy = (grid - points[..., 1, None]).square()  # [B, K, side] over y
    return torch.exp(-(gy[..., :, None] + gx[..., None, :]) / (2 * sigma**2))


def hard_argmax(heatmaps: Tensor) -> Tensor:
    """face-alignment's decoding (``utils.get_preds_fromhm``) in this project's pixel frame: the argmax pixel,
    moved a quarter pixel towards the larger neighbour along x and y unless it lies on the border.
    face-alignment returns these points + 0.5 (its pixel centres sit at half-integers) and tests its border
    against 63, i.e. for 64-px maps only; here against the map's own side."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    idx = flat.argmax(-1)
    x, y = idx % w, idx // w

    def at(dx: int, dy: int) -> Tensor:
        return flat.gather(-1, ((y + dy).clamp(0, h - 1) * w + (x + dx).clamp(0, w - 1))[..., None])[..., 0]

    interior = ((x > 0) & (x < w - 1) & (y > 0) & (y < h - 1))[..., None]
    step = torch.stack([at(1, 0) - at(-1, 0), at(0, 1) - at(0, -1)], -1).sign() * interior
    return torch.stack([x, y], -1).to(heatmaps.dtype) + 0.25 * step
