"""Image helpers shared by the analyzers and the criteria (both resize frames to their models' input)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize(x: Tensor, size: int) -> Tensor:
    """Resize to size x size (bilinear, as the seed's F.interpolate); identity when already that size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
