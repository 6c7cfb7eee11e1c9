"""Jacobians of a criterion w.r.t. one latent point, and their Gram matrices JᵀJ.

Three exact routes give the same J [m, D] (m outputs, D latent dims):
- ``loop``: one reverse pass per output row, exactly as the seed does (the reference).
- ``vjp``: one forward, then reverse passes for a chunk of rows at once (``torch.func.vmap`` over VJPs);
  cheapest when m < D.
- ``jvp``: forward-mode passes for a chunk of latent basis vectors at once (vmap over JVPs); cheapest
  when m > D.
``auto`` picks vjp or jvp by comparing m and D, and falls back to vjp where an op has no forward-mode
derivative.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

MODES = ("auto", "loop", "vjp", "jvp")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"engine.mode: unknown {mode!r}; allowed values: {', '.join(MODES)}")
    return mode


def jacobian(fn: Callable[[Tensor], Tensor], u: Tensor, mode: str = "auto", chunk: int = 64) -> Tensor:
    """J = d fn(u) / d u for a flat input u [D] and flat output fn(u) [m]; returns [m, D]."""
    check_mode(mode)
    if mode == "loop":
        return _jacobian_loop(fn, u)
    if mode == "auto":
        with torch.no_grad():
            m = fn(u).numel()
        if m < u.numel():
            return _jacobian_vjp(fn, u, chunk)
        try:
            return _jacobian_jvp(fn, u, chunk)
        except NotImplementedError:  # e.g. grid_sample has no forward-mode derivative
            return _jacobian_vjp(fn, u, chunk)
    return _jacobian_vjp(fn, u, chunk) if mode == "vjp" else _jacobian_jvp(fn, u, chunk)


def _jacobian_vjp(fn: Callable[[Tensor], Tensor], u: Tensor, chunk: int) -> Tensor:
    out, pullback = torch.func.vjp(fn, u)
    rows = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
    return torch.cat([torch.func.vmap(pullback)(rows[i: i + chunk])[0] for i in range(0, len(rows), chunk)])


def _jacobian_jvp(fn: Callable[[Tensor], Tensor], u: Tensor, chunk: int) -> Tensor:
    basis = torch.eye(u.numel(), dtype=u.dtype, device=u.device)
    return directional(fn, u, basis, chunk).T


def directional(fn: Callable[[Tensor], Tensor], u: Tensor, tangents: Tensor, chunk: int = 64) -> Tensor:
    """J t for each row t of ``tangents`` [K, D] -> [K, m], by batched forward mode."""
    push = lambda t: torch.func.jvp(fn, (u,), (t,))[1]  # noqa: E731
    return torch.cat([torch.func.vmap(push)(tangents[i: i + chunk]) for i in range(0, len(tangents), chunk)])


def _jacobian_loop(fn: Callable[[Tensor], Tensor], u: Tensor) -> Tensor:
    """The seed's method: one forward, then one ``backward`` per output row."""
    u = u.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(u)
        rows = [torch.autograd.grad(out[i], u, retain_graph=i < out.numel() - 1)[0] for i in range(out.numel())]
    return torch.stack(rows)


def gram(j: Tensor) -> Tensor:
    """JᵀJ in float64 (the solver's precision)."""
    j = j.double()
    return j.T @ j
