"""Gram-based peers (docs/peers.md), re-implemented from their papers on ice-exp's Grams.

Both take the run's Problem: foreground M_f = the activate Gram, background M_b = ``Problem.background()``
(the suppress Grams, each scaled to unit λ_max, summed). The papers build M_f / M_b from image pixels in
hand-drawn boxes, normalised by the pixel count; here any criterion can play either role, which is what
makes the comparison with ICE like for like. Both return unit directions [D, K], best first.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits
from torch import Tensor

from ice_exp.config import schema
from ice_exp.config.rules import LOWRANKGAN, SOLVER, enforce
from ice_exp.config.schema import PeerOrder, RpcaMethod
from ice_exp.solvers.base import Problem, Solution, Solver, ranked

RPCA_METHODS = tuple(m.value for m in RpcaMethod)  # the schema's choices
ORDERS = tuple(o.value for o in PeerOrder)
DEFAULTS = schema.LowRankGAN  # its keyword defaults (the schema's, one place)


def robust_pca(m: Tensor, lam: float = 1 / 60, method: str = "admm") -> tuple[Tensor, Tensor, int]:
    """M = L + S with L low-rank and S sparse: min ‖L‖_* + λ‖S‖_1 s.t. L + S = M, by alternating the two
    proximal steps and a dual ascent on the augmented Lagrangian. Neither method reaches the optimum exactly,
    and where each stops decides the numerical rank of L, so the method is part of the peer's definition:
    - ``admm``, zhujiapeng/LowRankGAN's RobustPCA: fixed μ = n²/(4‖M‖₁) (‖M‖₁ as numpy's matrix 1-norm,
      the largest absolute column sum), dual starting at 0, at most 10,000 steps, stop once
      ‖L + S − M‖_F ≤ 1e-7‖M‖_F;
    - ``ialm``, the project's former solver, the inexact ALM of Lin, Chen & Ma (2010): μ = 1.25/‖M‖₂ grows
      by 1.5 per step (capped at 1e7 times that), dual scaled into the feasible set, at most 500 steps,
      same stopping rule.
    M must be symmetric (a Gram): the singular value thresholding is done by eigendecomposition, the same
    map as the reference's SVD thresholding (|λ| shrunk, sign kept), computing only the eigenpairs that
    survive it (:func:`shrink_eigenvalues`).
    Returns (L, S, steps taken), L and S in float64."""
    if method not in RPCA_METHODS:
        raise ValueError(f"rpca_method: unknown {method!r}; allowed values: {', '.join(RPCA_METHODS)}")
    m = m.double()
    if method == "admm":
        mu = m.numel() / (4 * float(m.abs().sum(0).max()))
        mu_max, rho, max_iter, y = mu, 1.0, 10_000, torch.zeros_like(m)
    else:
        norm2 = float(torch.linalg.matrix_norm(m, 2))
        mu, mu_max, rho, max_iter = 1.25 / norm2, 1.25e7 / norm2, 1.5, 500
        y = m / max(norm2, float(m.abs().max()) / lam)
    low, sparse, bound = torch.zeros_like(m), torch.zeros_like(m), 1e-7 * m.norm()
    with threadpool_limits(limits=1, user_api="blas"):  # scipy's BLAS threads made the small LAPACK calls 9× slower
        for step in range(1, max_iter + 1):
            low = shrink_eigenvalues(m - sparse + y / mu, 1 / mu)
            x = m - low + y / mu
            sparse = x.sign() * (x.abs() - lam / mu).clamp_min(0)
            residual = m - low - sparse
            y = y + mu * residual
            mu = min(mu * rho, mu_max)
            if residual.norm() <= bound:
                break
    return low, sparse, step


def shrink_eigenvalues(x: Tensor, t: float) -> Tensor:
    """Singular value thresholding of a symmetric matrix (its lower triangle read, as ``torch.linalg.eigh``
    reads it): Σ sign(λ)(|λ| − t) q qᵀ over the eigenpairs with |λ| > t; the others are shrunk to 0.

    Only the surviving eigenpairs are computed (robust PCA's iterates keep a few of D): one tridiagonal
    reduction (LAPACK dsytrd), the eigenvalues beyond ±t by bisection (dstebz), their eigenvectors by inverse
    iteration (dstein), mapped back by the reduction's reflectors (dormqr), then a rank-r product instead of
    a full D×D one. The same map as the full eigendecomposition to round-off, about 3 times faster at
    D = 192 (docs/peers.md). Falls back to the full eigendecomposition where more than D/8 survive or
    inverse iteration reports a failure."""
    n = x.shape[0]
    if x.dtype != torch.float64 or n < 2 or x.device.type != "cpu":  # LAPACK's routines read host memory
        return _shrink_full(x, t)
    a = x.numpy()
    c, d, e, tau, info = lapack.dsytrd(a, lower=1, lwork=max(1, int(lapack.dsytrd_lwork(n, lower=1)[0])))
    if info != 0:
        return _shrink_full(x, t)
    bound = 2 * float(np.abs(d).sum() + 2 * np.abs(e).sum()) + 1.0  # beyond every eigenvalue (Gershgorin)
    values, blocks, split = [], [], None
    for lower, upper in ((-bound, -t), (t, bound)):  # dstebz takes (lower, upper]: λ = -t shrinks to 0 anyway
        count, w, iblock, split, info = lapack.dstebz(d, e, 1, lower, upper, 0, 0, 0.0, "B")
        if info != 0:
            return _shrink_full(x, t)
        values.append(w[:count])
        blocks.append(iblock[:count])
    w, iblock = np.concatenate(values), np.concatenate(blocks)
    if len(w) == 0:
        return torch.zeros_like(x)
    if len(w) > n // 8:
        return _shrink_full(x, t)
    order = np.lexsort((w, iblock))  # dstein wants them by split-off block, ascending within each
    w, iblock = w[order], iblock[order]
    z, info = lapack.dstein(d, e, w, np.concatenate([iblock, np.zeros(n - len(w), iblock.dtype)]), split)
    if info != 0:
        return _shrink_full(x, t)
    q = z[:, :len(w)].copy()
    q[1:] = lapack.dormqr("L", "N", c[1:, :n - 1], tau, q[1:], lwork=64 * len(w))[0]  # Q = diag(1, Q')
    q = torch.from_numpy(q)
    shrunk = torch.from_numpy(np.sign(w) * (np.abs(w) - t))
    return (q * shrunk) @ q.T


def _shrink_full(x: Tensor, t: float) -> Tensor:
    """shrink_eigenvalues by the full eigendecomposition."""
    lam_e, q = torch.linalg.eigh(x)
    return (q * (lam_e.sign() * (lam_e.abs() - t).clamp_min(0))) @ q.T


def _spectrum(m: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values of m, descending, and its right singular vectors as columns: the reference reads ranks
    and subspaces off an SVD (robust PCA's L is symmetric only up to round-off, and may be indefinite)."""
    _, sv, vh = torch.linalg.svd(m)
    return sv, vh.T


def _rank(sv: Tensor, ratio: float | None) -> int:
    """How many singular values exceed ratio·σ_max; ratio None = numpy's matrix_rank (D·eps·σ_max)."""
    cut = len(sv) * torch.finfo(sv.dtype).eps if ratio is None else ratio
    return int((sv > cut * sv[0]).sum()) if sv[0] > 0 else 0


class LowRankGAN(Solver):
    """LowRankGAN (Zhu et al., NeurIPS 2021), as zhujiapeng/LowRankGAN computes it: the foreground's principal
    subspace projected on the background's null space.

    1. Low-rank parts L_f, L_b of M_f, M_b by robust PCA (``rpca``, λ = ``lam``, solver ``rpca_method``:
       ``admm``, the reference's, or ``ialm``, see :func:`robust_pca`); else the Grams themselves.
    2. F = the top r_f right singular vectors of L_f, r_f = its numerical rank (numpy's matrix_rank:
       σ > D·eps·σ_max), or σ > ``rho``·σ_max when given.
    3. r_b = the numerical rank of L_b (or σ > ``null_ratio``·σ_max: strict, as numpy's matrix_rank that the
       reference calls); the top clamp(r_b − ``num_relax``, ``min_removed``, D − 1) singular vectors are
       removed, the rest is the null space N_b. ``min_removed: 1`` is the reference's (at least one background
       direction always goes). A zero L_b removes none: no suppress term, or robust PCA put the whole
       background into S. There the reference removes the first singular vector of a zero matrix, which
       numpy returns as the first coordinate axis: an artefact of the basis, not a background direction.
    4. Directions = the columns of N_b N_bᵀ F, normalised, in F's order with σ = L_f's singular values
       (``order: foreground``); ``order: gain`` re-ranks them by vᵀM_f v, the project's variant. Directions
       whose projection vanishes (‖·‖ ≤ 1e-6) are dropped (the reference would normalise round-off).
    Takes the Grams only. Robust PCA costs one D×D tridiagonal reduction per iteration (and the few eigenpairs
    that survive its thresholding), up to 10,000 with ``admm`` (minutes at D = 512 on one CPU thread; out of
    reach for D ≈ 9,000).
    """

    def __init__(self, rpca: bool = DEFAULTS.rpca, lam: float = DEFAULTS.lam, rpca_method: str = DEFAULTS.rpca_method.value,
                 num_relax: int = DEFAULTS.num_relax, rho: float | None = DEFAULTS.rho,
                 null_ratio: float | None = DEFAULTS.null_ratio, min_removed: int = DEFAULTS.min_removed,
                 order: str = DEFAULTS.order.value, max_directions: int | None = DEFAULTS.max_directions) -> None:
        enforce(LOWRANKGAN, {"lam": lam, "num_relax": num_relax, "rho": rho, "null_ratio": null_ratio,
                             "min_removed": min_removed, "max_directions": max_directions}, "solver.")
        if order not in ORDERS:
            raise ValueError(f"lowrankgan.order: unknown {order!r}; allowed values: {', '.join(ORDERS)}")
        if rpca_method not in RPCA_METHODS:
            raise ValueError(f"lowrankgan.rpca_method: unknown {rpca_method!r}; allowed values: {', '.join(RPCA_METHODS)}")
        self.rpca, self.lam, self.rpca_method, self.num_relax, self.rho = rpca, lam, rpca_method, num_relax, rho
        self.null_ratio, self.min_removed, self.order = null_ratio, min_removed, order
        self.max_directions = max_directions

    def __call__(self, problem: Problem) -> Solution:
        fg, bg = problem.activate.double(), problem.background()
        if self.rpca:
            fg = robust_pca(fg, self.lam, self.rpca_method)[0]
            bg = robust_pca(bg, self.lam, self.rpca_method)[0] if bg.abs().max() > 0 else bg
        sv_f, basis_f = _spectrum(fg)
        keep = _rank(sv_f, self.rho)
        sigma, principal = sv_f[:keep], basis_f[:, :keep]
        sv_b, basis_b = _spectrum(bg)
        removed = _rank(sv_b, self.null_ratio) - self.num_relax
        removed = min(max(removed, self.min_removed), bg.shape[0] - 1) if sv_b[0] > 0 else 0
        null = basis_b[:, removed:]
        projected = null @ (null.T @ principal)
        norms = projected.norm(dim=0)
        sigma, projected = sigma[norms > 1e-6], projected[:, norms > 1e-6] / norms[norms > 1e-6]
        if self.order == "gain":
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

    def __init__(self, tau: float = schema.ReSeFa.tau, rho: float = schema.ReSeFa.rho,
                 max_directions: int | None = schema.ReSeFa.max_directions) -> None:
        enforce(SOLVER, {"tau": tau, "rho": rho, "max_directions": max_directions}, "solver.")
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
