"""Landmark-attached texture: forbid colour / texture change, allow shape change (docs/method.md §2).

On the base frame, the pixels of a region are tied to a Delaunay triangulation of the 68 landmarks plus
the 4 image corners (barycentric coordinates in their triangle). Inside every Jacobian pass the same
pixels are looked up again where the *current* landmarks carry them. A change of shape moves the
landmarks and the pixels together, so the looked-up colours stay put; a change of colour or texture
does not move the landmarks, so they change. Suppressing the part therefore leaves shape free.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay
from torch import Tensor

from ice_exp.analyzers.base import Landmarker, Parser
from ice_exp.analyzers.masks import check_morphology, work_mask
from ice_exp.analyzers.points import rescale_points
from ice_exp.common.images import resize
from ice_exp.criteria.base import Criterion, State, check_nonempty
from ice_exp.generators.base import Frame


def cubic_weights(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Catmull-Rom weights of the taps at offsets -1, 0, 1, 2 for a fractional position t in [0, 1)."""
    t2, t3 = t * t, t * t * t
    return (-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2


def bicubic_sample(image: Tensor, points: Tensor) -> Tensor:
    """[B, C, H, W] sampled at [B, P, 2] (x, y) pixel coordinates (centres at integers) -> [B, C, P], with
    Catmull-Rom interpolation, positions clamped to the image and taps clamped to the border.

    Why not bilinear ``grid_sample`` (the seed's choice): the criterion's Jacobian differentiates the
    sampling at pixel centres, where bilinear interpolation has only a one-sided derivative (a forward
    difference), so the image's own motion and the sample points' motion leave a first-order residual;
    Catmull-Rom's derivative there is the central difference and the two cancel to second order (on a
    smooth pattern of 8 px period: residual 0.12 of the fixed-point pixel change vs 0.30 for bilinear).
    It is also written with gathers because grid_sample has no forward-mode derivative (torch.func.jvp)."""
    b, c, h, w = image.shape
    x, y = points[..., 0].clamp(0, w - 1), points[..., 1].clamp(0, h - 1)
    x0, y0 = x.detach().floor(), y.detach().floor()
    wx, wy = cubic_weights((x - x0).unsqueeze(1)), cubic_weights((y - y0).unsqueeze(1))
    flat = image.flatten(2)
    out = torch.zeros(b, c, points.shape[1], dtype=image.dtype, device=image.device)
    for dy, weight_y in zip(range(-1, 3), wy):
        row = (y0 + dy).clamp(0, h - 1) * w
        for dx, weight_x in zip(range(-1, 3), wx):
            index = (row + (x0 + dx).clamp(0, w - 1)).long().unsqueeze(1).expand(b, c, -1)
            out = out + weight_y * weight_x * flat.gather(2, index)
    return out


def image_corners(size: int, like: Tensor) -> Tensor:
    """The 4 corners of a size x size image in pixel coordinates (the image spans [-0.5, size - 0.5]), in the
    dtype and on the device of ``like``."""
    lo, hi = -0.5, size - 0.5
    return torch.tensor([[lo, lo], [hi, lo], [lo, hi], [hi, hi]], dtype=like.dtype, device=like.device)


def barycentric(vertices: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delaunay triangulation of ``vertices`` [V, 2]; for ``points`` [P, 2] inside their hull, the
    vertex indices [P, 3] of the containing triangle and the barycentric coordinates [P, 3]."""
    tri = Delaunay(vertices)
    simplex = tri.find_simplex(points)
    if (simplex < 0).any():
        raise ValueError("texture: some pixels fall outside the landmark triangulation")
    affine = tri.transform[simplex]  # [P, 3, 2]: rows 0-1 the inverse matrix, row 2 the offset
    b = np.einsum("pij,pj->pi", affine[:, :2], points - affine[:, 2])
    return tri.simplices[simplex], np.concatenate([b, 1 - b.sum(1, keepdims=True)], axis=1)


class LandmarkTexture(Criterion):
    """Part ``texture`` [B, 3 * num_points]: the colours, at work resolution ``size``, of ``num_points``
    region pixels (seeded subsample of the parser's hard mask of ``regions`` after ``morphology``, brought
    to ``size`` as the parser's ``mask_mode`` says: analyzers.masks.work_mask), re-sampled at the positions
    the current landmarks give them. When the mask has fewer pixels than ``num_points``, all are used and
    some repeated, so every sample has the same output size."""

    parts = ("texture",)
    needs = ("parser", "landmarker")  # analyzers the run hands it (ice_exp.criteria.build_criterion)

    def __init__(self, parser: Parser, landmarker: Landmarker, regions: list[str], morphology: str = "none",
                 ks_ratio: float = 0.05, size: int = 64, num_points: int = 1024, seed: int = 0) -> None:
        super().__init__()
        self.parser, self.landmarker, self.regions = parser, landmarker, list(regions)
        self.morphology, self.ks_ratio = morphology, ks_ratio
        self.size, self.num_points, self.seed = size, num_points, seed
        parser.labels_for(self.regions)
        check_morphology(morphology, ks_ratio)
        if num_points < 1 or size < 2:
            raise ValueError(f"texture: num_points must be >= 1 and size >= 2, got {num_points} and {size}")

    def work_image(self, image: Tensor) -> Tensor:
        """The image at work resolution, box-filtered when shrinking: bilinear resizing at large factors
        aliases, and aliasing patterns do not move with the landmarks (measured on toyface 256 -> 64 under
        a 1 px warp: residual 0.32 of the fixed-point change with box filtering, 0.50 with bilinear)."""
        if image.shape[-1] > self.size:
            return F.interpolate(image, size=(self.size, self.size), mode="area")
        return resize(image, self.size)

    def vertices(self, frame: Frame) -> Tensor:
        """Current landmarks at work resolution plus the fixed image corners: [B, 72, 2]."""
        points = rescale_points(self.landmarker(frame), frame.image.shape[-1], self.size)
        corners = image_corners(self.size, points).expand(points.shape[0], -1, -1)
        return torch.cat([points, corners], dim=1)

    def prepare(self, frame: Frame) -> State:
        what = f"texture regions={self.regions}"
        mask = self.parser.region_mask(frame, self.regions, self.morphology, self.ks_ratio)
        check_nonempty(mask, what)
        mask = work_mask(mask, self.size, self.parser.mask_mode)
        check_nonempty(mask, f"{what} at size {self.size}")
        vertices = self.vertices(frame).cpu().double().numpy()
        generator = torch.Generator().manual_seed(self.seed)  # on the CPU: the same points on every device
        triangles, weights = [], []
        for b in range(mask.shape[0]):
            rows, cols = torch.nonzero(mask[b, 0].cpu(), as_tuple=True)
            order = torch.randperm(len(rows), generator=generator, device="cpu")
            pick = order.repeat(-(-self.num_points // len(rows)))[: self.num_points]
            centres = torch.stack([cols[pick], rows[pick]], dim=1).double().numpy()
            tri, bary = barycentric(vertices[b], centres)
            triangles.append(torch.from_numpy(tri))
            weights.append(torch.from_numpy(bary))
        device, dtype = frame.image.device, frame.image.dtype
        return {"triangles": torch.stack(triangles).to(device), "weights": torch.stack(weights).to(device, dtype)}

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        triangles, weights = state["triangles"], state["weights"]  # [B, P, 3]
        vertices = self.vertices(frame)
        picked = vertices.gather(1, triangles.flatten(1).unsqueeze(-1).expand(-1, -1, 2))
        positions = (picked.view(*triangles.shape, 2) * weights.unsqueeze(-1)).sum(2)  # [B, P, 2]
        colours = bicubic_sample(self.work_image(frame.image), positions)
        return {"texture": colours.flatten(1)}
