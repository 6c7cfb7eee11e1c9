"""Region colour: change a region's mean colour, not its internal pattern (method.md §3)."""
from __future__ import annotations

from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.criteria.base import Criterion, State, check_nonempty, resize
from ice_exp.generators.base import Frame


class RegionColour(Criterion):
    """Parts ``mean`` = per-channel mean colour of the region [B, 3] and ``residual`` = x - mean*mask,
    resized to ``size``. The mask is the parser's hard mask on the base frame."""

    parts = ("mean", "residual")

    def __init__(self, parser: Parser, regions: list[str], size: int = 64) -> None:
        super().__init__()
        self.parser, self.regions, self.size = parser, list(regions), size
        parser.labels_for(self.regions)

    def prepare(self, frame: Frame) -> State:
        mask = self.parser.region_mask(frame, self.regions)
        check_nonempty(mask, f"region_colour regions={self.regions}")
        return {"mask": mask}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        x, mask = frame.image, state["mask"]
        mean = (x * mask).sum((2, 3)) / mask.sum((2, 3))
        residual = x - mean[:, :, None, None] * mask
        return {"mean": mean, "residual": resize(residual, self.size).flatten(1)}
