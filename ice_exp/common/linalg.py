"""Linear algebra shared by the solvers, the engine and the metrics: eigenspaces and principal angles.

It sits below all of them (it imports only torch), so that a solver, an engine diagnostic and a metric can
use the same definition without importing each other."""
from __future__ import annotations

import torch
from torch import Tensor


def significant_eigenspace(gram: Tensor, ratio: float) -> Tensor:
    """Eigenvectors [D, k] of a PSD matrix with λ >= ratio * λ_max (float64)."""
    lam, q = torch.linalg.eigh(gram.double())
    return q[:, lam >= ratio * lam[-1].clamp_min(0)]


def orthonormal(basis: Tensor) -> Tensor:
    u, s, _ = torch.linalg.svd(basis.double(), full_matrices=False)
    return u[:, s > 1e-10 * s.max()] if len(s) else u


def principal_angles(a: Tensor, b: Tensor) -> Tensor:
    """Principal angles in degrees, ascending, between span(a) and span(b) ([D, k1], [D, k2]); there are
    min(k1, k2) of them (singular values of Q1ᵀQ2 for orthonormal bases)."""
    qa, qb = orthonormal(a), orthonormal(b)
    if qa.shape[1] == 0 or qb.shape[1] == 0:
        return torch.full((1,), 90.0, dtype=torch.float64)
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)).flip(0)


def eigenspace_angle(approx: Tensor, exact: Tensor, ratio: float) -> tuple[float, int, int]:
    """How well a Gram approximation keeps the solver's view of a term: the largest principal angle (degrees)
    between the eigenspaces with λ ≥ ratio·λ_max of ``approx`` and ``exact``, and their dimensions. The
    null space at ``ratio`` is the orthogonal complement, so its angle is the same when the dimensions match."""
    a, b = significant_eigenspace(approx, ratio), significant_eigenspace(exact, ratio)
    return float(principal_angles(a, b).max()), a.shape[1], b.shape[1]


def best_fixed_subspace(bases: list[Tensor], dim: int) -> Tensor:
    """[D, dim]: the subspace closest on average to the spans of ``bases`` (the top eigenvectors of their
    mean orthogonal projector; each basis orthonormal [D, k_i])."""
    mean_projector = sum(b.double() @ b.double().T for b in bases) / len(bases)
    return torch.linalg.eigh(mean_projector)[1][:, -dim:] if dim else mean_projector[:, :0]
