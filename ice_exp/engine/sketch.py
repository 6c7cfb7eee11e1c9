"""Matrix-free low-rank Grams: fewer passes than rows, where the solver does not need all of JᵀJ.

Both sketches build an orthonormal basis Q [D, ℓ] of the dominant row space of J with reverse passes on
random probes (Jᵀω, ω ~ N(0, I_m): the randomised range finder of Halko, Martinsson & Tropp 2011), then
apply J to Q with forward passes and return the Rayleigh–Ritz Gram M̂ = Q (JQ)ᵀ(JQ) Qᵀ: JᵀJ restricted
exactly to span Q, PSD, rank ℓ, and M̂ ≤ M.

- ``range_sketch(..., ratio=r)`` (suppress terms, ``engine.suppress_rank``): the solver keeps the
  eigenspace with λ ≥ r·λ_max and treats the rest as null, so a direction that Q misses is harmless iff
  its λ is below r·λ_max. After each block the largest eigenvalue that Q misses, λ_miss = ‖J(I−QQᵀ)‖₂²,
  is estimated a posteriori (block power iteration on (I−QQᵀ)JᵀJ(I−QQᵀ) with a few probes); while
  λ_miss ≥ MISS_SHARE·r·λ_max another block is added (the probes' directions first). The estimate
  converges to λ_miss from below, so it is an estimate, not a bound; ``Sketch.missed`` reports it.
- ``topk_gram`` (activate term, ``engine.activate_topk``): randomised subspace iteration on v ↦ Jᵀ(Jv)
  and the top-K Ritz pairs only.
Forward passes need forward-mode derivatives in the criterion (every ice-exp criterion has them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ice_exp.engine.jacobian import Fn, directional, pullback_rows

MISS_SHARE = 0.05  # stop when the estimated missed eigenvalue is below this share of the null threshold
PROBES = 8  # probe vectors of the a-posteriori estimate
PROBE_ITERS = 2  # power steps of the a-posteriori estimate


@dataclass
class Sketch:
    basis: Tensor  # Q [D, ℓ] float64, orthonormal
    jq: Tensor  # J Q as rows [ℓ, m] float64
    missed: float  # estimated largest eigenvalue of JᵀJ outside span Q (nan when not estimated)
    passes: int  # reverse plus forward passes spent

    @property
    def core(self) -> Tensor:
        """(JQ)ᵀ(JQ) [ℓ, ℓ]: JᵀJ in the basis Q."""
        return self.jq @ self.jq.T

    def gram(self, top: int | None = None) -> Tensor:
        """M̂ = Q core Qᵀ [D, D] float64, optionally truncated to its ``top`` eigenpairs."""
        lam, w = torch.linalg.eigh(self.core)
        if top is not None:
            lam, w = lam[-top:], w[:, -top:]
        v = self.basis @ w
        return (v * lam.clamp_min(0)) @ v.T


def range_sketch(fn: Fn, u: Tensor, rank: int, oversample: int = 10, ratio: float | None = None,
                 power_iters: int = 0, chunk: int | None = None, seed: int = 0) -> Sketch:
    """Q from ``rank + oversample`` probes (each block refined by ``power_iters`` steps of JᵀJ); with
    ``ratio`` the basis grows block by block until the missed eigenvalue is below the null threshold."""
    with torch.no_grad():
        m = fn(u).numel()
    dim, limit = u.numel(), min(m, u.numel())
    gen = torch.Generator().manual_seed(seed)
    gauss = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).to(u.device)  # noqa: E731
    q = torch.zeros(dim, 0, dtype=torch.float64, device=u.device)
    jq = torch.zeros(0, m, dtype=torch.float64, device=u.device)
    block, carry, passes, missed = min(rank + oversample, limit), None, 0, float("nan")
    while True:
        y = pullback_rows(fn, u, gauss(block, m), chunk=chunk).double().T
        passes += block
        new = _complement(q, y if carry is None else torch.cat([carry, y], 1))
        for _ in range(power_iters):
            passes += 2 * new.shape[1]
            new = _complement(q, _normal_apply(fn, u, new, chunk))
        q = torch.cat([q, new], 1)
        jq = torch.cat([jq, directional(fn, u, new.T, chunk=chunk).double()])
        passes += new.shape[1]
        if q.shape[1] >= limit or new.shape[1] == 0:
            missed = 0.0  # Q spans the whole row space of J
            break
        if ratio is None:
            break
        carry, missed = _missed(fn, u, q, gauss(dim, PROBES), chunk)
        passes += (2 * PROBE_ITERS + 1) * PROBES
        if missed < MISS_SHARE * ratio * float(torch.linalg.eigvalsh(jq @ jq.T)[-1]):
            break
        block = min(block, limit - q.shape[1])
    return Sketch(basis=q, jq=jq, missed=missed, passes=passes)


def topk_gram(fn: Fn, u: Tensor, k: int, oversample: int = 10, power_iters: int = 2, chunk: int | None = None,
              seed: int = 0) -> tuple[Tensor, int]:
    """Rank-K approximation of JᵀJ [D, D] by randomised subspace iteration, and the passes it took."""
    sketch = range_sketch(fn, u, k, oversample, power_iters=power_iters, chunk=chunk, seed=seed)
    return sketch.gram(top=k), sketch.passes


def _complement(q: Tensor, y: Tensor) -> Tensor:
    """Orthonormal basis of the part of span(y) orthogonal to span(q): columns scaled to unit length,
    projected twice (for stability), and what is left below 1e-10 of a unit column counts as inside q."""
    y = y / y.norm(dim=0).clamp_min(1e-300)
    for _ in range(2):
        y = y - q @ (q.T @ y)
    basis, s, _ = torch.linalg.svd(y, full_matrices=False)
    return basis[:, s > 1e-10]


def _normal_apply(fn: Fn, u: Tensor, x: Tensor, chunk: int | None) -> Tensor:
    """JᵀJ x for the columns of x [D, k] -> [D, k] (k forward and k reverse passes)."""
    jx = directional(fn, u, x.T, chunk=chunk)
    return pullback_rows(fn, u, jx, chunk=chunk).double().T


def _missed(fn: Fn, u: Tensor, q: Tensor, x: Tensor, chunk: int | None) -> tuple[Tensor, float]:
    """Block power estimate of the largest eigenvalue of JᵀJ orthogonal to q; also returns the probes'
    final directions (the dominant missed ones), which the next block starts from."""
    x = _complement(q, x)
    for _ in range(PROBE_ITERS):
        x = _complement(q, _normal_apply(fn, u, x, chunk))
    jx = directional(fn, u, x.T, chunk=chunk).double()
    return x, float(torch.linalg.eigvalsh(jx @ jx.T)[-1]) if len(jx) else 0.0
