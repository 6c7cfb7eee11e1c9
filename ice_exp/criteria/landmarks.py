"""Landmark group: move these landmarks, keep the others (docs/method.md §2)."""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.analyzers.base import Landmarker
from ice_exp.common.face_parts import NUM_LANDMARKS, landmark_group
from ice_exp.criteria.base import Criterion, State
from ice_exp.generators.base import Frame


class LandmarkGroup(Criterion):
    """Parts ``group`` (the selected points) and ``others`` (the remaining points), in image pixels,
    flattened (x, y) per point; with ``centred`` each set is centred on its own mean, so that a rigid
    shift of the group does not count as a change of its shape."""

    parts = ("group", "others")
    needs = ("landmarker",)  # analyzers the run hands it (ice_exp.criteria.build_criterion)

    def __init__(self, landmarker: Landmarker, group: str, centred: bool = False) -> None:
        super().__init__()
        self.landmarker, self.centred = landmarker, centred
        self.group = list(landmark_group(group))
        self.others = [i for i in range(NUM_LANDMARKS) if i not in self.group]

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        points = self.landmarker(frame)
        out = {}
        for part, idx in (("group", self.group), ("others", self.others)):
            p = points[:, torch.tensor(idx, dtype=torch.long, device=points.device)]  # a list index is built on the CPU
            if self.centred:
                p = p - p.mean(1, keepdim=True)
            out[part] = p.flatten(1)
        return out
