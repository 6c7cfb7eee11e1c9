"""Gram-based peers (peers.md), re-implemented from their papers on ice-exp's Grams.

Both take the run's Problem: foreground M_f = the activate Gram, background M_b = ``Problem.background()``
(the suppress Grams, each scaled to unit λ_max, summed). The papers build M_f / M_b from image pixels in
hand-drawn boxes, normalised by the pixel count; here any criterion can play either role, which is what
makes the comparison with ICE like for like. Both return unit directions [D, K], best first.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.solvers.base import Problem, Solution, Solver, ranked


def robust_pca(m: Tensor, lam: float = 1 / 60, tol: float = 1e-7, max_iter: int = 500) -> tuple[Tensor, Tensor]:
    """M = L + S with L low-rank and S sparse: min ‖L‖_* + λ‖S‖_1 s.t. L + S = M, by the inexact augmented
    Lagrange multiplier method (Lin, Chen & Ma 2010; μ grows by 1.5 per step). M must be symmetric (a Gram),
    so the singular value thresholding is done by eigendecomposition. Returns (L, S) in float64."""
    m = m.double()
    norm2 = torch.linalg.matrix_norm(m, 2)
    y = m / max(float(norm2), float(m.abs().max()) / lam)  # dual variable, scaled into the feasible set
    mu, mu_max, rho = 1.25 / float(norm2), 1.25e7 / float(norm2), 1.5
    low, sparse = torch.zeros_like(m), torch.zeros_like(m)
    for _ in range(max_iter):
        lam_e, q = torch.linalg.eigh(m - sparse + y / mu)
        low = (q * (lam_e.sign() * (lam_e.abs() - 1 / mu).clamp_min(0))) @ q.T
        x = m - low + y / mu
        sparse = x.sign() * (x.abs() - lam / mu).clamp_min(0)
        residual = m - low - sparse
        y = y + mu * residual
        mu = min(mu * rho, mu_max)
        if residual.norm() < tol * m.norm():
            break
    return low, sparse


class LowRankGAN(Solver):
    """LowRankGAN (Zhu et al., NeurIPS 2021): the foreground's principal subspace projected on the
    background's null space.

    1. Low-rank parts L_f, L_b of M_f, M_b by robust PCA (``rpca``, λ = ``lam``); else the Grams themselves.
    2. F = eigenvectors of L_f with λ > ``rho``·λ_max (at most ``max_directions``).
    3. N_b = eigenvectors of L_b outside its rank r (numerical rank, λ > D·eps·λ_max, or λ ≥ ``null_ratio``·λ_max
       when given), widened by ``num_relax`` eigenvectors just inside it (the paper's rank relaxation).
    4. Directions = the columns of N_b N_bᵀ F, normalised; those whose projection vanishes are dropped.
       σ = vᵀM_f v of each direction.
    Takes the Grams only. Robust PCA costs one D×D eigendecomposition per iteration (slow for D ≈ 9,000).
    """

    def __init__(self, rpca: bool = True, lam: float = 1 / 60, num_relax: int = 0, rho: float = 1e-2,
                 null_ratio: float | None = None, max_directions: int | None = None) -> None:
        self.rpca, self.lam, self.num_relax, self.rho = rpca, lam, num_relax, rho
        self.null_ratio, self.max_directions = null_ratio, max_directions

    def __call__(self, problem: Problem) -> Solution:
        fg, bg = problem.activate.double(), problem.background()
        if self.rpca:
            fg = robust_pca(fg, self.lam)[0]
            bg = robust_pca(bg, self.lam)[0] if bg.abs().max() > 0 else bg
        lam_f, q_f = torch.linalg.eigh(fg)
        principal = q_f[:, lam_f > self.rho * lam_f[-1].clamp_min(0)].flip(1)[:, : self.max_directions]
        lam_b, q_b = torch.linalg.eigh(bg)
        cut = self.null_ratio if self.null_ratio is not None else bg.shape[0] * torch.finfo(torch.float64).eps
        rank = int((lam_b > cut * lam_b[-1].clamp_min(0)).sum()) if lam_b[-1] > 0 else 0
        null = q_b[:, : bg.shape[0] - max(rank - self.num_relax, 0)]
        projected = null @ (null.T @ principal)
        norms = projected.norm(dim=0)
        projected = projected[:, norms > 1e-6] / norms[norms > 1e-6]
        sigma = ((problem.activate.double() @ projected) * projected).sum(0)
        return ranked(sigma, projected, self.max_directions)


class ReSeFa(Solver):
    """ReSeFa (Zhu et al., ICML 2022): maximise the generalised Rayleigh quotient
    vᵀM_f v / vᵀ(M_b + τ·tr(M_b)·I)v, i.e. the generalised eigenproblem M_f v = σ A v, A = M_b + τ tr(M_b) I.

    Solved in float64 by Cholesky whitening: A = LLᵀ, eigh(L⁻¹ M_f L⁻ᵀ) = W Σ Wᵀ, v = L⁻ᵀw normalised to
    unit length (the directions are A-orthogonal, not orthogonal). σ = the quotient; keeps σ > ``rho``·σ_max
    (at most ``max_directions``). With no suppress term A would be 0; A = I is used (PCA of M_f).
    Takes the Grams only; no robust PCA (as the paper).
    """

    def __init__(self, tau: float = 1e-3, rho: float = 1e-2, max_directions: int | None = None) -> None:
        self.tau, self.rho, self.max_directions = tau, rho, max_directions

    def __call__(self, problem: Problem) -> Solution:
        fg, bg = problem.activate.double(), problem.background()
        eye = torch.eye(bg.shape[0], dtype=torch.float64, device=bg.device)
        trace = torch.trace(bg)
        chol = torch.linalg.cholesky(bg + self.tau * trace * eye if trace > 0 else eye)
        whitened = torch.linalg.solve_triangular(chol, torch.linalg.solve_triangular(chol, fg, upper=False).T, upper=False)
        sigma, w = torch.linalg.eigh((whitened + whitened.T) / 2)
        v = torch.linalg.solve_triangular(chol.T, w, upper=True)
        return ranked(sigma, v / v.norm(dim=0), self.max_directions, self.rho)
