"""Jacobians of a criterion w.r.t. one latent point, and their Gram matrices JᵀJ.

Three exact routes give the same J [m, D] (m outputs, D latent dims):
- ``loop``: one reverse pass per output row, exactly as the seed does (the reference).
- ``vjp``: one forward, then reverse passes for a chunk of rows at once (``torch.func.vmap`` over VJPs);
  cheapest when m < D.
- ``jvp``: forward-mode passes for a chunk of latent basis vectors at once (vmap over JVPs); cheapest
  when m > D.
``auto`` picks vjp or jvp by comparing m and D.
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
        mode = "vjp" if m < u.numel() else "jvp"
    if mode == "vjp":
        out, pullback = torch.func.vjp(fn, u)
        rows = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
        return torch.cat([torch.func.vmap(pullback)(rows[i: i + chunk])[0] for i in range(0, len(rows), chunk)])
    basis = torch.eye(u.numel(), dtype=u.dtype, device=u.device)
    push = lambda t: torch.func.jvp(fn, (u,), (t,))[1]  # noqa: E731
    return torch.cat([torch.func.vmap(push)(basis[i: i + chunk]) for i in range(0, len(basis), chunk)]).T


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
