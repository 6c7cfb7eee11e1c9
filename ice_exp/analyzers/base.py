"""Analyzer interfaces: a face parser and a landmark model, real (BiSeNet, FAN) or oracle (toyface).

Both take a :class:`~ice_exp.generators.base.Frame` so that oracles can read the rendered scene while
real models read only ``frame.image``; every criterion works with any implementation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ice_exp.analyzers.masks import MASK_MODES, morph, resize_mask
from ice_exp.common.face_parts import REGIONS, expand_regions
from ice_exp.generators.base import Frame


class Parser(nn.Module):
    """Semantic face parser. ``forward`` returns class probabilities [B, C, R, R] at image size.

    ``mask_mode`` says where hard masks are made and morphed (analyzers.masks): ``image`` (ours) or, for
    a parser network, ``seed`` (at the network's input side, as the original ICE code); criteria ask it
    whether to resize the image before combining it with a mask (``seed``) or after (``image``)."""

    class_names: tuple[str, ...] = REGIONS  # the parser's own label order, named with face_parts.REGIONS
    mask_modes: tuple[str, ...] = ("image",)  # the mask conventions this parser can follow
    mask_mode: str = "image"

    def __init__(self, mask_mode: str = "image") -> None:
        super().__init__()
        if mask_mode not in self.mask_modes:
            why = " (it makes and morphs masks at a parser network's input side)" if mask_mode in MASK_MODES else ""
            raise ValueError(f"analyzer.parser.mask_mode: {mask_mode!r} is not available for {type(self).__name__}{why}; "
                             f"allowed values: {', '.join(self.mask_modes)}")
        self.mask_mode = mask_mode

    def extra_repr(self) -> str:
        return f"mask_mode={self.mask_mode}"

    def forward(self, frame: Frame) -> Tensor:
        raise NotImplementedError

    def labels_for(self, regions: list[str] | tuple[str, ...]) -> list[int]:
        """This parser's labels for region names; regions it cannot see are an error."""
        names = expand_regions(regions)
        missing = [n for n in names if n not in self.class_names]
        if missing:
            raise ValueError(f"regions: {missing} not produced by parser {type(self).__name__}; it knows {self.class_names}")
        return [self.class_names.index(n) for n in names]

    def label_map(self, frame: Frame) -> Tensor:
        """[B, 1, r, r] hard labels (argmax) on the grid where masks are made and morphed: the image's."""
        return self(frame).argmax(1, keepdim=True)

    def region_mask(self, frame: Frame, regions: list[str] | tuple[str, ...], morphology: str = "none",
                    ks_ratio: float = 0.0, soft: bool = False) -> Tensor:
        """[B, 1, R, R] mask of the union of ``regions`` at image size: hard (argmax, as the seed; a constant
        inside the Jacobian) after ``morphology`` on the label map's grid, or the summed probabilities."""
        labels = self.labels_for(regions)
        if soft:
            if morphology != "none":
                raise ValueError(f"morphology: soft masks take none, got {morphology!r}")
            return self(frame)[:, labels].sum(1, keepdim=True)
        hard = self.label_map(frame)
        mask = torch.isin(hard, torch.tensor(labels, device=hard.device)).to(frame.image.dtype)
        mask = morph(mask, morphology, ks_ratio, self.mask_mode)
        return resize_mask(mask, frame.image.shape[-1])


class Landmarker(nn.Module):
    """68-point iBUG landmark model. ``forward`` returns [B, 68, 2] (x, y) in image pixels, differentiably.

    Pixel convention (all landmark models and criteria): pixel centres sit at integer coordinates, so the
    top-left pixel's centre is (0, 0) and the image spans [-0.5, R - 0.5]; ``grid_sample`` with
    ``align_corners=True`` maps pixel p to 2 * p / (R - 1) - 1.
    """

    def forward(self, frame: Frame) -> Tensor:
        raise NotImplementedError
