"""FAN 68-point landmarks, differentiable end to end (docs/method.md §2).

face-alignment's ``FaceAlignment`` runs a face detector, crops, takes a hard argmax of the heatmaps and
may ``torch.compile`` the network; none of that is differentiable or needed on aligned faces. Here the
bare ``face_alignment.models.FAN`` (4 hourglass stacks) reads the whole image resized to 256, and the
last stack's heatmaps become coordinates through a soft-argmax.

Pixel convention (``analyzers.base.Landmarker``): pixel centres sit at integer coordinates, pixel (row i,
column j) at (j, i), and an image of side R spans [-0.5, R - 0.5]. A heatmap of side r therefore maps to
the image by ``x_R = (x_r + 0.5) * R / r - 0.5`` (the two grids cover the same square).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from face_alignment.models import FAN
from torch import Tensor

from ice_exp.analyzers.base import Landmarker
from ice_exp.analyzers.points import rescale_points
from ice_exp.analyzers.weights import Pretrained, WeightSpec
from ice_exp.common.images import resize
from ice_exp.generators.base import Frame

# face-alignment 1.5 publishes a plain state dict; 1.3-1.4 published TorchScript archives (read as data,
# never run: ice_exp/checkpoints/torchscript.py). All three are FAN(4) weights.
FAN_WEIGHTS = WeightSpec(
    what="FAN 2D landmarks (face-alignment 2DFAN-4)",
    file_names=("2DFAN4-11f355bf06.pth.tar", "2DFAN4_1.6-c827573f02.zip", "2DFAN4-cd938726ad.zip"),
    caches=("torch_hub",),
    url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
)


HEATMAP_MODES = ("relu", "seed", "local")


def soft_argmax(heatmaps: Tensor, eps: float = 1e-12) -> Tensor:
    """Expected position under each heatmap: [B, K, H, W] weights -> [B, K, 2] (x, y) in the heatmap's
    pixel frame (pixel centres at integers). Each map is divided by its sum (a raw map's sum may be
    negative); a sum within ``eps`` of zero counts as ``eps``, so an all-zero map gives (0, 0), not NaN."""
    h, w = heatmaps.shape[-2:]
    total = heatmaps.sum((-2, -1), keepdim=True)
    p = heatmaps / torch.where(total.abs() < eps, eps, total)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    return torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], dim=-1)


def near_peak(heatmaps: Tensor, radius: int) -> Tensor:
    """The ReLU'd maps [B, K, H, W] kept within ``radius`` heatmap px (both axes) of each map's hard peak,
    zero elsewhere. The window is chosen without gradient and is constant near a given image, so the
    derivative is that of the weights inside it."""
    h, w = heatmaps.shape[-2:]
    peak = heatmaps.detach().flatten(-2).argmax(-1)  # [B, K]
    rows = torch.arange(h, device=heatmaps.device)[:, None] - (peak // w)[..., None, None]
    cols = torch.arange(w, device=heatmaps.device)[None, :] - (peak % w)[..., None, None]
    return heatmaps.relu() * ((rows.abs() <= radius) & (cols.abs() <= radius))


class FANLandmarker(Landmarker, Pretrained):
    """Image -> resize to ``size`` (256 as trained; inputs in [0, 1] RGB, no normalisation) -> FAN ->
    last-stack heatmaps -> soft-argmax -> image pixels. The soft-argmax is a smooth stand-in for
    face-alignment's hard argmax, which has no gradient.

    ``heatmap_mode`` ``relu`` (ours) clips the maps at zero first: an expectation needs non-negative
    weights, and a slightly negative background over the whole map drags the point and, because it
    shrinks the sum, amplifies its Jacobian. ``seed`` divides the raw maps by their sum, as the original
    ICE code. Any positive background pulls the point towards the map's centre in both modes; ``local``
    reads the ReLU'd map only within ``local_radius`` heatmap px of its hard peak (:func:`near_peak`), so
    the background far from the point neither pulls it nor moves it."""

    def __init__(self, num_modules: int = 4, size: int = 256, heatmap_mode: str = "relu", local_radius: int = 3) -> None:
        super().__init__()
        if heatmap_mode not in HEATMAP_MODES:
            raise ValueError(f"analyzer.landmarker.heatmap_mode: unknown {heatmap_mode!r}; "
                             f"allowed values: {', '.join(HEATMAP_MODES)}")
        if local_radius < 1:
            raise ValueError(f"analyzer.landmarker.local_radius: {local_radius} must be >= 1 heatmap px")
        self.net, self.size, self.heatmap_mode, self.local_radius = FAN(num_modules), size, heatmap_mode, local_radius
        self.freeze()

    def extra_repr(self) -> str:
        local = f", local_radius={self.local_radius}" if self.heatmap_mode == "local" else ""  # read by local only
        return f"size={self.size}, heatmap_mode={self.heatmap_mode}{local}"

    def forward(self, frame: Frame) -> Tensor:
        heatmaps = self.net(resize(frame.image, self.size))[-1]
        if self.heatmap_mode == "relu":
            heatmaps = heatmaps.relu()
        elif self.heatmap_mode == "local":
            heatmaps = near_peak(heatmaps, self.local_radius)
        return rescale_points(soft_argmax(heatmaps), heatmaps.shape[-1], frame.image.shape[-1])


def fan(path: str | Path | None = None, size: int = 256, num_modules: int = 4, heatmap_mode: str = "relu",
        local_radius: int = 3) -> FANLandmarker:
    """FAN with the published 2DFAN-4 weights (``num_modules`` 4) or weights trained on toyface (any depth):
    ``path`` (file or folder), else the torch hub cache."""
    landmarker = FANLandmarker(num_modules, size, heatmap_mode, local_radius)
    spec = FAN_WEIGHTS if num_modules == 4 else replace(FAN_WEIGHTS, what=f"FAN 2D landmarks ({num_modules} hourglass modules)")
    landmarker.load_weights(spec, path)
    return landmarker
