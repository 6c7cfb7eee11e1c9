"""Jacobians of a criterion w.r.t. one latent point, and their Gram matrices JᵀJ.

Three exact routes give the same J [m, D] (m outputs, D latent dims):
- ``loop``: one reverse pass per output row, exactly as the seed does (the reference).
- ``vjp``: one forward, then reverse passes for a chunk of rows at once (``torch.func.vmap`` over VJPs);
  cheapest when m < D.
- ``jvp``: forward-mode passes for a chunk of latent basis vectors at once (vmap over JVPs); cheapest
  when m > D.
``auto`` picks vjp or jvp by comparing m and D, and falls back to vjp where an op has no forward-mode
derivative. Chunk sizes come from ``engine.memory`` (free memory, halved on out-of-memory) unless given.

The two batched primitives, ``pullback_rows`` (Jᵀc for many c) and ``directional`` (Jt for many t), are
also what the matrix-free sketches in ``engine.sketch`` are built from.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ice_exp.config.schema import EngineMode
from ice_exp.engine.memory import in_chunks

MODES = tuple(m.value for m in EngineMode)  # the schema's choices (ice_exp/config/schema.py)

Fn = Callable[[Tensor], Tensor]
Rows = Tensor | Callable[[int, int], Tensor]  # [count, n], or (start, stop) -> rows start..stop-1


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"engine.mode: unknown {mode!r}; allowed values: {', '.join(MODES)}")
    return mode


def jacobian(fn: Fn, u: Tensor, mode: str = "auto", chunk: int | None = None) -> Tensor:
    """J = d fn(u) / d u for a flat input u [D] and flat output fn(u) [m]; returns [m, D].
    ``chunk``: rows (vjp) or columns (jvp) per batched pass; None chooses from free memory."""
    check_mode(mode)
    if mode == "loop":
        return _jacobian_loop(fn, u)
    if mode == "vjp":
        return _jacobian_vjp(fn, u, chunk)
    if mode == "jvp":
        return _jacobian_jvp(fn, u, chunk)
    with torch.no_grad():
        m = fn(u).numel()
    if m < u.numel():
        return _jacobian_vjp(fn, u, chunk, m)
    try:
        return _jacobian_jvp(fn, u, chunk)
    except NotImplementedError:  # an op without forward-mode derivative
        return _jacobian_vjp(fn, u, chunk, m)


def basis_rows(start: int, stop: int, size: int, like: Tensor) -> Tensor:
    """Rows start..stop-1 of the identity of side ``size`` (built per chunk: eye(9088) would be 330 MB)."""
    rows = torch.zeros(stop - start, size, dtype=like.dtype, device=like.device)
    rows[torch.arange(stop - start, device=like.device), torch.arange(start, stop, device=like.device)] = 1
    return rows


def pullback_rows(fn: Fn, u: Tensor, cotangents: Rows, count: int | None = None, chunk: int | None = None) -> Tensor:
    """Jᵀc for each cotangent c [m] -> [count, D]: one forward, then batched reverse passes.
    ``cotangents`` is a [count, m] tensor or a function (start, stop) -> its rows start..stop-1."""
    _, pullback = torch.func.vjp(fn, u)
    make, count = _rows(cotangents, count, u)
    return in_chunks(lambda i, j: torch.func.vmap(pullback)(make(i, j))[0], count, u.device, chunk)


def directional(fn: Fn, u: Tensor, tangents: Rows, count: int | None = None, chunk: int | None = None) -> Tensor:
    """J t for each tangent t [D] -> [count, m], by batched forward mode (same ``Rows`` forms as above)."""
    push = lambda t: torch.func.jvp(fn, (u,), (t,))[1]  # noqa: E731
    make, count = _rows(tangents, count, u)
    return in_chunks(lambda i, j: torch.func.vmap(push)(make(i, j)), count, u.device, chunk)


def _rows(rows: Rows, count: int | None, like: Tensor) -> tuple[Callable[[int, int], Tensor], int]:
    if isinstance(rows, Tensor):
        return (lambda i, j: rows[i:j].to(like)), len(rows)
    if count is None:
        raise ValueError("rows given as a function need their count")
    return rows, count


def _jacobian_vjp(fn: Fn, u: Tensor, chunk: int | None, m: int | None = None) -> Tensor:
    if m is None:
        with torch.no_grad():
            m = fn(u).numel()
    return pullback_rows(fn, u, lambda i, j: basis_rows(i, j, m, u), m, chunk)


def _jacobian_jvp(fn: Fn, u: Tensor, chunk: int | None) -> Tensor:
    dim = u.numel()
    return directional(fn, u, lambda i, j: basis_rows(i, j, dim, u), dim, chunk).T


def _jacobian_loop(fn: Fn, u: Tensor) -> Tensor:
    """The seed's method: one forward, then one ``backward`` per output row."""
    u = u.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(u)
        rows = [torch.autograd.grad(out[i], u, retain_graph=i < out.numel() - 1)[0] for i in range(out.numel())]
    return torch.stack(rows)


def gram(j: Tensor, twin: Tensor | None = None, margin: float = 0.0) -> Tensor:
    """JᵀJ in float64 (the solver's precision). With the ``twin`` reading J₂ of the same outputs by the
    cross-check analyzers (criteria.terms): AᵀA − (1 + margin) HᵀH, A = (J + J₂)/2 their mean reading and
    H = (J − J₂)/2 their disagreement; margin 0 is the cross-Gram (JᵀJ₂ + J₂ᵀJ)/2. vᵀ(·)v then counts a
    change in direction v only by what exceeds ``margin`` times the readings' disagreement in that direction
    (possibly indefinite: negative where they disagree more than they move)."""
    j = j.double()
    if twin is None:
        return j.T @ j
    mean, half_difference = (j + twin.double()) / 2, (j - twin.double()) / 2
    return mean.T @ mean - (1 + margin) * (half_difference.T @ half_difference)


def squared_change(moved: Tensor, twin: Tensor | None = None, margin: float = 0.0) -> Tensor:
    """‖J v_k‖² [K] from the rows J v_k [K, m]; with the twin's J₂ v_k, vᵀ(gram(J, J₂, margin))v per row."""
    moved = moved.double()
    if twin is None:
        return moved.square().sum(1)
    mean, half_difference = (moved + twin.double()) / 2, (moved - twin.double()) / 2
    return mean.square().sum(1) - (1 + margin) * half_difference.square().sum(1)
