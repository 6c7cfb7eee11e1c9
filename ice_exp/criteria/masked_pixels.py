"""Masked pixels: "change the pixels here, not there" (docs/method.md §2)."""
from __future__ import annotations

from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.analyzers.masks import check_morphology, work_mask
from ice_exp.common.images import resize
from ice_exp.criteria.base import Criterion, State, bbox_of, check_nonempty
from ice_exp.generators.base import Frame


class MaskedPixels(Criterion):
    """Parts ``inside`` = x*mask and ``outside`` = x*(1-mask) at ``size`` px. The mask is the parser's hard
    mask of ``regions`` on the base frame, after optional morphology, and stays constant inside the
    Jacobian (as the seed). How the image meets the mask follows the parser's ``mask_mode``:

    ``image`` (ours): ``inside`` is cropped at image size to the mask's bounding box (union over the batch)
    and that box is stretched to size x size; ``outside`` is resized whole.
    ``seed``: image and mask are resized to ``size`` first (the mask keeps every pixel the region reaches),
    then each part is cropped to its own mask's box in that frame, unstretched, as the original code does.
    """

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
        mask = self.parser.region_mask(frame, self.regions, self.morphology, self.ks_ratio)
        check_nonempty(mask, f"masked_pixels regions={self.regions}")
        if self.parser.mask_mode != "seed":
            return {"mask": mask, "bbox": bbox_of(mask)}
        small = work_mask(mask, self.size, "seed")
        whole = (0, self.size, 0, self.size)
        boxes = {"inside": bbox_of(small), "outside": bbox_of(1 - small) if (small < 1).any() else whole}
        return {"mask": mask, "small": small, "boxes": boxes if self.crop else dict.fromkeys(boxes, whole)}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        if self.parser.mask_mode == "seed":
            return self.resized_then_cropped(frame.image, state)
        x, mask = frame.image, state["mask"]
        inside = x * mask
        if self.crop:
            top, bottom, left, right = state["bbox"]
            inside = inside[..., top:bottom, left:right]
        return {
            "inside": resize(inside, self.size).flatten(1),
            "outside": resize(x * (1 - mask), self.size).flatten(1),
        }

    def resized_then_cropped(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """The seed's order: resize, multiply by the resized mask, crop each part to its mask's box."""
        x, mask = resize(x, self.size), state["small"]
        out = {}
        for part, m in (("inside", mask), ("outside", 1 - mask)):
            top, bottom, left, right = state["boxes"][part]
            out[part] = (x * m)[..., top:bottom, left:right].flatten(1)
        return out
