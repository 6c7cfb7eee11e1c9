"""High frequency: change fine detail, keep the low-pass image, or the reverse (docs/method.md §2)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ice_exp.common.images import resize
from ice_exp.criteria.base import Criterion, State
from ice_exp.generators.base import Frame


class HighFrequency(Criterion):
    """Parts ``low`` = up(down(x, cutoff)) and ``high`` = x - low, both resized to ``size`` (so that
    high + low = resize(x) exactly). ``down`` is an area (box-filter) resize, which low-passes even at large
    factors (1024 -> 24); ``up`` is bilinear back to the image's resolution."""

    parts = ("high", "low")

    def __init__(self, cutoff: int = 24, size: int = 64) -> None:
        super().__init__()
        if cutoff < 1 or size < 1:
            raise ValueError(f"high_frequency: cutoff and size must be >= 1, got {cutoff} and {size}")
        self.cutoff, self.size = cutoff, size

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        x = frame.image
        low = F.interpolate(F.interpolate(x, size=(self.cutoff, self.cutoff), mode="area"), size=x.shape[-2:],
                            mode="bilinear", align_corners=False)
        return {"high": resize(x - low, self.size).flatten(1), "low": resize(low, self.size).flatten(1)}
