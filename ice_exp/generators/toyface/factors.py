"""The hidden map from styles to named ground-truth factors, and the truth it implies.

factors = tanh((F s - c) / scale): a fixed, seeded read-out F of the packed styles s. Geometry factors read
the coarse style layers, appearance factors the fine ones (as in StyleGAN); the read-out rows are neither
axis-aligned nor mutually orthogonal (they share a common component, so naive PCA mixes them), and a
quarter of every layer's coordinates are read by no factor (they affect nothing). Because the map is an
elementwise tanh of a linear read-out, the set of directions that change a factor group and no other
factor does not depend on the sample: that set is the *true subspace* a discovery method should find.
"""
from __future__ import annotations

import torch
from torch import Tensor

GEOMETRY = (
    "face_width", "jaw_length", "chin_shape", "head_yaw", "eye_size", "eye_openness", "eye_spacing",
    "brow_height", "nose_length", "nose_width", "mouth_width", "mouth_openness", "smile_curvature",
    "hair_length",
)
APPEARANCE = ("skin_tone", "hair_colour", "lip_colour", "iris_colour", "background_colour", "lighting")
FACTORS: tuple[str, ...] = GEOMETRY + APPEARANCE

COARSE_LAYERS = 4  # style layers 0..3 drive geometry, the rest drive appearance
LIVE_FRACTION = 0.75  # the first 75% of each layer's coordinates are read; the rest affect nothing
SHARED_WEIGHT = 0.25  # weight of the component all rows of a kind share (pairwise cosine ~0.06 on top of chance)


def factor_index(names: list[str] | tuple[str, ...], key: str = "factors") -> list[int]:
    unknown = [n for n in names if n not in FACTORS]
    if unknown:
        raise ValueError(f"{key}: unknown factors {unknown}; allowed values: {', '.join(FACTORS)}")
    return [FACTORS.index(n) for n in names]


def readout_matrix(style_dims: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """F [num_factors, s_dim]: each row random over the live coordinates of its layers plus a shared part."""
    offsets = torch.tensor((0,) + style_dims).cumsum(0)
    coarse, fine = torch.zeros(sum(style_dims), dtype=torch.bool), torch.zeros(sum(style_dims), dtype=torch.bool)
    for layer, d in enumerate(style_dims):
        live = torch.zeros(sum(style_dims), dtype=torch.bool)
        live[offsets[layer]: offsets[layer] + int(d * LIVE_FRACTION)] = True
        (coarse if layer < COARSE_LAYERS else fine).logical_or_(live)
    rows = []
    for kind_mask, names in ((coarse, GEOMETRY), (fine, APPEARANCE)):
        shared = torch.randn(sum(style_dims), generator=generator) * kind_mask
        for _ in names:
            row = torch.randn(sum(style_dims), generator=generator) * kind_mask
            row = row / row.norm() + SHARED_WEIGHT * shared / shared.norm()
            rows.append(row / row.norm())
    return torch.stack(rows)


def true_subspace(jacobian: Tensor, group: list[int], tol: float = 1e-9) -> Tensor:
    """Orthonormal basis [D, k] of the directions that move the ``group`` factors and no other factor.

    ``jacobian`` is d factors / d latent [num_factors, D] (any sample: the truth is sample-independent in
    S, W and W+). The answer is the projection of the group's gradient rows onto the null space of the
    other factors' rows.
    """
    others = [i for i in range(jacobian.shape[0]) if i not in group]
    j = jacobian.double()
    _, s, vh = torch.linalg.svd(j[others], full_matrices=True)
    rank = int((s > tol * s.max()).sum())
    null = vh[rank:].T  # [D, D - rank]
    projected = null @ (null.T @ j[group].T)  # [D, |group|]
    u, sv, _ = torch.linalg.svd(projected, full_matrices=False)
    return u[:, sv > tol * sv.max()]
