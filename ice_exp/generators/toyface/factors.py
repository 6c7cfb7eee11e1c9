"""The hidden map from styles to named ground-truth factors, and the truth it implies.

factors = tanh((F s - c) / scale + curvature · g(s)): a fixed, seeded read-out F of the packed styles s,
plus, in a *curved* world, a smooth nonlinear part g. Geometry factors read the coarse style layers,
appearance factors the fine ones (as in StyleGAN), in both parts; the read-out rows are neither
axis-aligned nor mutually orthogonal (they share a common component, so naive PCA mixes them), and a
quarter of every layer's coordinates are read by no factor (they affect nothing).

With ``curvature`` 0 the map is an elementwise tanh of a linear read-out, so the set of directions that
change a factor group and no other factor does not depend on the sample: that set is the *true subspace* a
discovery method should find. g is a one-hidden-layer tanh network with one hidden unit per live
coordinate of its kind (no bottleneck), so its Jacobian turns from face to face, as an edit direction of a
real GAN does: the true subspace is then local (exact at each face, from the factor Jacobian there), and no
fixed subspace is pure at every face.
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
    coarse, fine = live_masks(style_dims)
    rows = []
    for kind_mask, names in ((coarse, GEOMETRY), (fine, APPEARANCE)):
        shared = torch.randn(sum(style_dims), generator=generator) * kind_mask
        for _ in names:
            row = torch.randn(sum(style_dims), generator=generator) * kind_mask
            row = row / row.norm() + SHARED_WEIGHT * shared / shared.norm()
            rows.append(row / row.norm())
    return torch.stack(rows)


def live_masks(style_dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Boolean [s_dim] masks of the coarse (geometry) and fine (appearance) live coordinates."""
    offsets = torch.tensor((0,) + style_dims).cumsum(0)
    coarse, fine = torch.zeros(sum(style_dims), dtype=torch.bool), torch.zeros(sum(style_dims), dtype=torch.bool)
    for layer, d in enumerate(style_dims):
        live = torch.zeros(sum(style_dims), dtype=torch.bool)
        live[offsets[layer]: offsets[layer] + int(d * LIVE_FRACTION)] = True
        (coarse if layer < COARSE_LAYERS else fine).logical_or_(live)
    return coarse, fine


def curve_weights(style_dims: tuple[int, ...], generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The nonlinear part's weights: hidden = tanh(A x + b) on standardised styles x, g = G hidden.
    One hidden unit per live coordinate; a geometry unit reads the coarse live coordinates and feeds the
    geometry factors only, an appearance unit likewise (A [H, s_dim], b [H], G [num_factors, H])."""
    coarse, fine = live_masks(style_dims)
    units = torch.cat([torch.zeros(int(coarse.sum()), dtype=torch.long), torch.ones(int(fine.sum()), dtype=torch.long)])
    reads = torch.stack([coarse, fine])[units].to(torch.float32)  # [H, s_dim]; unit kind 0 geometry, 1 appearance
    a = torch.randn(len(units), sum(style_dims), generator=generator) * reads
    a = a / a.norm(dim=1, keepdim=True)  # unit rows: a pre-activation of standardised styles has std ~1
    b = 0.5 * torch.randn(len(units), generator=generator)
    kinds = torch.tensor([0] * len(GEOMETRY) + [1] * len(APPEARANCE))
    g = torch.randn(len(FACTORS), len(units), generator=generator) * (kinds[:, None] == units[None, :])
    return a, b, g


def true_subspace(jacobian: Tensor, group: list[int], tol: float = 1e-9) -> Tensor:
    """Orthonormal basis [D, k] of the directions that move the ``group`` factors and no other factor.

    ``jacobian`` is d factors / d latent [num_factors, D] at one sample (in a linear world any sample: the
    truth is sample-independent in S, W and W+; in a curved one the answer holds at that sample), or
    [N, num_factors, D] at N samples: then the directions that move the group and no other factor at every
    one of them. The answer is the projection of the group's gradient rows onto the null space of the
    other factors' rows.
    """
    j = jacobian.double().reshape(-1, *jacobian.shape[-2:])
    others = [i for i in range(j.shape[1]) if i not in group]
    _, s, vh = torch.linalg.svd(j[:, others].reshape(-1, j.shape[-1]), full_matrices=True)
    rank = int((s > tol * s.max()).sum())
    null = vh[rank:].T  # [D, D - rank]
    rows = j[:, group].reshape(-1, j.shape[-1]).T  # [D, N |group|]
    u, sv, _ = torch.linalg.svd(null @ (null.T @ rows), full_matrices=False)
    return u[:, sv > tol * torch.linalg.matrix_norm(rows, 2)]  # relative to the rows, so an empty answer stays empty
