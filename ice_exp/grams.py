"""Per-sample work of a discovery run: the Gram matrix JᵀJ of every term, and directional changes."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ice_exp.engine.jacobian import directional, gram, jacobian
from ice_exp.generators.base import Generator
from ice_exp.terms import Terms


def _criterion_fns(generator: Generator, terms: Terms, u: Tensor, space: str
                   ) -> Iterator[tuple[str, Callable[[Tensor], Tensor], dict[str, int]]]:
    """For each criterion: (key, fn: u [D] -> its used parts concatenated [m], {part: size}) at u.
    The criterion's constants (masks, triangulations) are prepared once on the frame at u."""
    with torch.no_grad():
        frame = generator.decode(u[None], space)
    for key, criterion in terms.criteria.items():
        with torch.no_grad():
            state = criterion.prepare(frame)
            sizes = {p: o.shape[1] for p, o in sorted(terms.outputs(key, frame, state).items())}

        def fn(v: Tensor, key: str = key, state: dict = state) -> Tensor:
            out = terms.outputs(key, generator.decode(v[None], space), state)
            return torch.cat([out[p][0] for p in sorted(out)])

        yield key, fn, sizes


def _per_term(terms: Terms, key: str, rows: Tensor, sizes: dict[str, int], dim: int) -> dict[str, Tensor]:
    """Split a criterion's stacked outputs (along ``dim``) into the terms that use them."""
    parts = dict(zip(sizes, torch.split(rows, list(sizes.values()), dim=dim)))
    return {t.name: parts[t.part] for t in terms.terms if t.criterion == key}


def sample_grams(generator: Generator, terms: Terms, u: Tensor, space: str, mode: str = "auto",
                 chunk: int = 64) -> dict[str, Tensor]:
    """{term name: J_termᵀ J_term [D, D] float64} at one latent point u [D]."""
    grams: dict[str, Tensor] = {}
    for key, fn, sizes in _criterion_fns(generator, terms, u, space):
        j = jacobian(fn, u, mode=mode, chunk=chunk)
        if not torch.isfinite(j).all():
            raise FloatingPointError(f"criterion {key}: its Jacobian has NaN/Inf entries at this sample")
        grams.update({name: gram(rows) for name, rows in _per_term(terms, key, j, sizes, 0).items()})
    return grams


def directional_changes(generator: Generator, terms: Terms, u: Tensor, space: str, directions: Tensor) -> dict[str, Tensor]:
    """{term name: ‖J_term v_k‖² per unit step [K]} at u for the columns v_k of ``directions`` [D, K]."""
    tangents = directions.to(u.dtype).T
    out: dict[str, Tensor] = {}
    for key, fn, sizes in _criterion_fns(generator, terms, u, space):
        try:
            moved = directional(fn, u, tangents)
        except NotImplementedError:  # an op without forward-mode derivative: J by reverse mode, then J v
            moved = tangents @ jacobian(fn, u, mode="vjp").T
        out.update({name: (rows.double() ** 2).sum(1) for name, rows in _per_term(terms, key, moved, sizes, 1).items()})
    return out
