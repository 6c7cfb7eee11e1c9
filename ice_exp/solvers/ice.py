"""ICE's solvers (docs/method.md §4): early projection (the paper's method) and late projection (done right)."""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.common.linalg import significant_eigenspace
from ice_exp.config.rules import SOLVER, enforce
from ice_exp.config.schema import IceSolver, NullSpace
from ice_exp.solvers.base import Problem, Solution, Solver, ranked

NULL_SPACES = tuple(n.value for n in NullSpace)  # the schema's choices (ice_exp/config/schema.py)


def null_intersection(problem: Problem, tol: float = 1e-6) -> Tensor:
    """Orthonormal basis B [D, r] of ∩_j N_j, N_j = span{q : λ < r_j λ_max(M_j)} (B = I with no term).

    v lies in every N_j iff it has no component in any significant eigenspace K_j, i.e. iff
    vᵀ(Σ_j K_j K_jᵀ)v = 0; B holds the eigenvectors of that projector sum below ``tol`` (a squared sine:
    1e-6 allows a 0.06° tilt, which absorbs float32 Jacobian noise in the K_j)."""
    dim = problem.activate.shape[0]
    projectors = torch.zeros(dim, dim, dtype=torch.float64, device=problem.activate.device)
    for term in problem.suppress:
        kept = significant_eigenspace(term.gram, term.ratio)
        projectors += kept @ kept.T
    lam, q = torch.linalg.eigh(projectors)
    return q[:, lam < tol]


NUMERICAL_ZERO = 1e-10  # gains below this share of the activate term's largest eigenvalue are round-off


def sequential_null_basis(problem: Problem) -> Tensor:
    """B for the Rayleigh reading of "near-null": v stays iff vᵀM_j v < r_j λ_max(M_j) for every term,
    imposed one term at a time inside the basis left by the previous ones. Unlike the exact
    intersection, a direction that a term moves only slightly is not lost because that term's
    significant eigenvectors lean a little towards it."""
    basis = torch.eye(problem.activate.shape[0], dtype=torch.float64, device=problem.activate.device)
    for term in problem.suppress:
        gram = term.gram.double()
        lam, p = torch.linalg.eigh(basis.T @ gram @ basis)
        basis = basis @ p[:, lam < term.ratio * torch.linalg.eigvalsh(gram)[-1].clamp_min(0)]
    return basis


def _top(sigma: Tensor, directions: Tensor, rho: float, max_directions: int | None, scale: Tensor) -> Solution:
    """Keep σ > rho * σ_max, sorted; σ below NUMERICAL_ZERO * ``scale`` (λ_max of M_act) is round-off, so a
    null space that kills the activate term returns no direction instead of noise."""
    real = sigma > NUMERICAL_ZERO * scale
    return ranked(sigma[real], directions[:, real], max_directions, rho)


def null_basis(problem: Problem, null_space: str = "intersection", tol: float = 1e-6) -> Tensor:
    """The basis B the directions must live in: docs/method.md's exact intersection, or the sequential one."""
    if null_space not in NULL_SPACES:
        raise ValueError(f"solver.null_space: unknown {null_space!r}; allowed values: {', '.join(NULL_SPACES)}")
    return null_intersection(problem, tol) if null_space == "intersection" else sequential_null_basis(problem)


class EarlyProjection(Solver):
    """Maximise vᵀM_act v subject to v ⟂ the significant eigenspace of every suppress term: eigendecompose
    BᵀM_act B in the null-space basis B and keep σ > rho * σ_max. Needs the Gram matrices only.
    ``null_space``: "intersection" (docs/method.md §4, the default) or "sequential" (see sequential_null_basis)."""

    def __init__(self, rho: float = IceSolver.rho, max_directions: int | None = IceSolver.max_directions,
                 null_space: str = IceSolver.null_space.value, intersection_tol: float = IceSolver.intersection_tol) -> None:
        enforce(SOLVER, {"rho": rho, "max_directions": max_directions, "intersection_tol": intersection_tol}, "solver.")
        self.rho, self.max_directions = rho, max_directions
        self.null_space, self.intersection_tol = null_space, intersection_tol
        null_basis(Problem(torch.zeros(1, 1, dtype=torch.float64)), null_space)  # validate now

    def __call__(self, problem: Problem) -> Solution:
        basis = null_basis(problem, self.null_space, self.intersection_tol)
        if basis.shape[1] == 0:
            return Solution(torch.zeros(0, dtype=torch.float64), basis)
        act = problem.activate.double()
        sigma, p = torch.linalg.eigh(basis.T @ act @ basis)
        return _top(sigma, basis @ p, self.rho, self.max_directions, torch.linalg.eigvalsh(act)[-1])


class LateProjection(Solver):
    """PCA of M_act in the full space, then each kept direction projected onto the null-space intersection
    of *all* suppress terms and renormalised (the seed's version used only the last term and normalised
    rows). Directions whose projection vanishes are dropped. σ is the activate gain after projection."""

    def __init__(self, rho: float = IceSolver.rho, max_directions: int | None = IceSolver.max_directions,
                 null_space: str = IceSolver.null_space.value, intersection_tol: float = IceSolver.intersection_tol) -> None:
        enforce(SOLVER, {"rho": rho, "max_directions": max_directions, "intersection_tol": intersection_tol}, "solver.")
        self.rho, self.max_directions = rho, max_directions
        self.null_space, self.intersection_tol = null_space, intersection_tol
        null_basis(Problem(torch.zeros(1, 1, dtype=torch.float64)), null_space)  # validate now

    def __call__(self, problem: Problem) -> Solution:
        act = problem.activate.double()
        lam, q = torch.linalg.eigh(act)
        q = q[:, lam > self.rho * lam[-1].clamp_min(0)]
        basis = null_basis(problem, self.null_space, self.intersection_tol)
        projected = basis @ (basis.T @ q)
        norms = projected.norm(dim=0)
        projected = projected[:, norms > 1e-6] / norms[norms > 1e-6]
        sigma = ((act @ projected) * projected).sum(0)
        return _top(sigma, projected, 0.0, self.max_directions, lam[-1])
