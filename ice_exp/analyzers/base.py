"""Analyzer interfaces: a face parser and a landmark model, real (BiSeNet, FAN) or oracle (toyface).

Both take a :class:`~ice_exp.generators.base.Frame` so that oracles can read the rendered scene while
real models read only ``frame.image``; every criterion works with any implementation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ice_exp.face_parts import REGIONS, expand_regions
from ice_exp.generators.base import Frame


class Parser(nn.Module):
    """Semantic face parser. ``forward`` returns class probabilities [B, C, R, R] at image size."""

    class_names: tuple[str, ...] = REGIONS  # the parser's own label order, named with face_parts.REGIONS

    def forward(self, frame: Frame) -> Tensor:
        raise NotImplementedError

    def labels_for(self, regions: list[str] | tuple[str, ...]) -> list[int]:
        """This parser's labels for region names; regions it cannot see are an error."""
        names = expand_regions(regions)
        missing = [n for n in names if n not in self.class_names]
        if missing:
            raise ValueError(f"regions: {missing} not produced by parser {type(self).__name__}; it knows {self.class_names}")
        return [self.class_names.index(n) for n in names]

    def region_mask(self, frame: Frame, regions: list[str] | tuple[str, ...], soft: bool = False) -> Tensor:
        """[B, 1, R, R] mask of the union of ``regions``: argmax (hard, as the seed) or summed probabilities."""
        probs = self(frame)
        labels = self.labels_for(regions)
        if soft:
            return probs[:, labels].sum(1, keepdim=True)
        hard = probs.argmax(1, keepdim=True)
        return torch.isin(hard, torch.tensor(labels, device=hard.device)).to(probs.dtype)


class Landmarker(nn.Module):
    """68-point iBUG landmark model. ``forward`` returns [B, 68, 2] (x, y) in image pixels, differentiably.

    Pixel convention (all landmark models and criteria): pixel centres sit at integer coordinates, so the
    top-left pixel's centre is (0, 0) and the image spans [-0.5, R - 0.5]; ``grid_sample`` with
    ``align_corners=True`` maps pixel p to 2 * p / (R - 1) - 1.
    """

    def forward(self, frame: Frame) -> Tensor:
        raise NotImplementedError
