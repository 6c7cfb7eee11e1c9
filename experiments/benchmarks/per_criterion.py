"""The per-criterion path that the shared frame (ice_exp.engine.frame) replaced, kept for comparison only:
each criterion renders the face again inside its own Jacobian and its own directional passes, its mode
chosen by its own rows (auto: vjp below D rows, jvp above). The benchmarks time it side by side with
today's engine; tests/test_engine.py checks that both give the same results.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.criteria.terms import Terms
from ice_exp.engine.jacobian import directional, gram, jacobian
from ice_exp.generators.base import Generator


def criterion_fns(generator: Generator, terms: Terms, u: Tensor, space: str):
    """(key, fn: v [D] -> the criterion's used parts concatenated, its terms' (name, part) and row slices)."""
    with torch.no_grad():
        frame = generator.decode(u[None], space)
    for key, criterion in terms.criteria.items():
        with torch.no_grad():
            state = criterion.prepare(frame)
            sizes = {p: o.shape[1] for p, o in sorted(terms.outputs(key, frame, state).items())}
        offsets, start = {}, 0
        for p, m in sizes.items():
            offsets[p], start = slice(start, start + m), start + m

        def fn(v: Tensor, key: str = key, state: dict = state) -> Tensor:
            out = terms.outputs(key, generator.decode(v[None], space), state)
            return torch.cat([out[p][0] for p in sorted(out)])

        yield key, fn, {t.name: offsets[t.part] for t in terms.terms if t.criterion == key}


def sample_grams(generator: Generator, terms: Terms, u: Tensor, space: str, mode: str = "auto",
                 chunk: int | None = None, **_: object) -> dict[str, Tensor]:
    """{term name: JᵀJ} with one Jacobian per criterion (exact terms only)."""
    grams = {}
    for _, fn, rows in criterion_fns(generator, terms, u, space):
        j = jacobian(fn, u, mode=mode, chunk=chunk)
        grams.update({name: gram(j[r]) for name, r in rows.items()})
    return grams


def directional_changes(generator: Generator, terms: Terms, u: Tensor, space: str, directions: Tensor) -> dict[str, Tensor]:
    """{term name: ‖J_term v_k‖² [K]} with one batch of forward passes per criterion."""
    out = {}
    for _, fn, rows in criterion_fns(generator, terms, u, space):
        moved = directional(fn, u, directions.to(u.dtype).T)
        out.update({name: (moved[:, r].double() ** 2).sum(1) for name, r in rows.items()})
    return out
