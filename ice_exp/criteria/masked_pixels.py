"""Masked pixels: "change the pixels here, not there" (docs/method.md §2)."""
from __future__ import annotations

from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.criteria.base import Criterion, State, bbox_of, check_morphology, check_nonempty, morph
from ice_exp.generators.base import Frame
from ice_exp.images import resize


class MaskedPixels(Criterion):
    """Parts ``inside`` = x*mask cropped to the mask's bounding box (union over the batch) and resized;
    ``outside`` = x*(1-mask) resized. The mask is the parser's hard mask of ``regions`` on the base frame,
    after optional morphology, and stays constant inside the Jacobian (as the seed)."""

    parts = ("inside", "outside")
    needs = ("parser",)  # analyzers the run hands it (ice_exp.criteria.build_criterion)

    def __init__(self, parser: Parser, regions: list[str], morphology: str = "none", ks_ratio: float = 0.05,
                 size: int = 64, crop: bool = True) -> None:
        super().__init__()
        self.parser, self.regions, self.morphology, self.ks_ratio = parser, list(regions), morphology, ks_ratio
        self.size, self.crop = size, crop
        parser.labels_for(self.regions)  # validate names now, before any compute
        check_morphology(morphology, ks_ratio)

    def prepare(self, frame: Frame) -> State:
        mask = morph(self.parser.region_mask(frame, self.regions), self.morphology, self.ks_ratio)
        check_nonempty(mask, f"masked_pixels regions={self.regions}")
        return {"mask": mask, "bbox": bbox_of(mask)}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        x, mask = frame.image, state["mask"]
        inside = x * mask
        if self.crop:
            t, b, l, r = state["bbox"]
            inside = inside[..., t:b, l:r]
        return {
            "inside": resize(inside, self.size).flatten(1),
            "outside": resize(x * (1 - mask), self.size).flatten(1),
        }

