"""Region colour: change a region's mean colour, not its internal pattern (docs/method.md §2)."""
from __future__ import annotations

from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.analyzers.masks import work_mask
from ice_exp.common.images import resize
from ice_exp.criteria.base import Criterion, State, check_nonempty
from ice_exp.generators.base import Frame


def fitted_colour(x: Tensor, mask: Tensor) -> Tensor:
    """The least-squares colour c [B, C] of x ≈ c·mask: Σ x·m / Σ m² (the plain mean for a hard mask)."""
    return (x * mask).sum((2, 3)) / mask.square().sum((2, 3))


class RegionColour(Criterion):
    """Parts ``mean`` = the region's colour [B, 3] and ``residual`` = x - mean*mask, resized to ``size``.

    The mask is the parser's mask on the base frame: hard (argmax, as the seed) or, with ``soft``, the
    parser's probabilities. The colour is the least-squares fit Σ x·m / Σ m², which is the plain mean for a
    hard mask. Why soft: an anti-aliased edge pixel shows the region only in part, so a uniform colour shift
    of the region moves it by its share m; a hard mask counts that as a change of the residual (measured
    on toyface at 128 px: 1.9e-3 of λ_max, more than a small region's whole colour change), a soft mask
    with the least-squares colour cancels it exactly.

    With the parser's ``mask_mode`` ``seed`` both parts are computed at ``size`` instead, from the resized
    image and the resized mask (every pixel the region reaches), as the original code does; it knows only
    hard masks, so ``soft`` is refused there."""

    parts = ("mean", "residual")
    needs = ("parser",)  # analyzers the run hands it (ice_exp.criteria.build_criterion)

    def __init__(self, parser: Parser, regions: list[str], size: int = 64, soft: bool = False) -> None:
        super().__init__()
        self.parser, self.regions, self.size, self.soft = parser, list(regions), size, soft
        parser.labels_for(self.regions)
        if soft and parser.mask_mode == "seed":
            raise ValueError("region_colour: soft: true is the project's own mask; the seed's glue "
                             "(analyzer.parser.mask_mode=seed) takes hard masks: set soft: false")

    def prepare(self, frame: Frame) -> State:
        what = f"region_colour regions={self.regions}"
        mask = self.parser.region_mask(frame, self.regions, soft=self.soft)
        check_nonempty(mask, what)
        if self.parser.mask_mode != "seed":
            return {"mask": mask}
        small = work_mask(mask, self.size, "seed")
        check_nonempty(small, f"{what} at size {self.size}")
        return {"mask": mask, "small": small}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        x, mask = frame.image, state["mask"]
        if self.parser.mask_mode == "seed":
            x, mask = resize(x, self.size), state["small"]
        mean = fitted_colour(x, mask)
        residual = x - mean[:, :, None, None] * mask
        return {"mean": mean, "residual": resize(residual, self.size).flatten(1)}
