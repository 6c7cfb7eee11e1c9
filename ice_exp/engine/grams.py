"""Per-sample work of a discovery run: the Gram matrix JᵀJ of every term (optionally cached), and
directional changes."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from ice_exp.analyzers.base import Landmarker, Parser
from ice_exp.analyzers.weights import Pretrained
from ice_exp.engine.cache import GramCache, key_of, state_hash
from ice_exp.engine.jacobian import check_mode, directional, gram, jacobian
from ice_exp.engine.precision import check_precision, precision_error, precision_scope
from ice_exp.engine.sketch import range_sketch, topk_gram
from ice_exp.generators.base import Generator
from ice_exp.terms import Terms


def criterion_fns(generator: Generator, terms: Terms, u: Tensor, space: str
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


def _select(fn: Callable[[Tensor], Tensor], sizes: dict[str, int], parts: list[str]) -> Callable[[Tensor], Tensor]:
    """``fn`` restricted to some of its parts (in the order of ``sizes``)."""
    if list(sizes) == parts:
        return fn
    offsets = dict(zip(sizes, itertools.accumulate(sizes.values(), initial=0)))
    return lambda v: torch.cat([fn(v)[offsets[p]: offsets[p] + sizes[p]] for p in parts])


def term_fn(generator: Generator, terms: Terms, u: Tensor, space: str, name: str) -> Callable[[Tensor], Tensor]:
    """v [D] -> the outputs [m] of the term ``name``, its criterion prepared on the frame at u."""
    term = next(t for t in terms.terms if t.name == name)
    for key, fn, sizes in criterion_fns(generator, terms, u, space):
        if key == term.criterion:
            return _select(fn, sizes, [term.part])
    raise KeyError(name)


def sample_grams(generator: Generator, terms: Terms, u: Tensor, space: str, mode: str = "auto",
                 chunk: int | None = None, precision: str = "fp32", activate_topk: int | None = None,
                 suppress_rank: int | None = None, oversample: int = 10,
                 passes: dict[str, int] | None = None) -> dict[str, Tensor]:
    """{term name: J_termᵀ J_term [D, D] float64} at one latent point u [D] (options: conf ``engine:``).

    Exact terms share one Jacobian per criterion (``mode``, ``chunk``). With ``activate_topk`` the activate
    term is its rank-K approximation by subspace iteration, and with ``suppress_rank`` each suppress term
    is a randomised range sketch grown until its null space at the term's ratio is kept (engine.sketch);
    a term whose first sketch would already need as many passes as the exact route stays exact.
    ``passes``, when given, receives the passes spent per criterion key (exact) or term name (sketched)."""
    check_precision(precision)
    passes = {} if passes is None else passes
    grams: dict[str, Tensor] = {}
    dim = u.numel()
    with precision_scope(precision, u.device):
        for key, fn, sizes in criterion_fns(generator, terms, u, space):
            users = [t for t in terms.terms if t.criterion == key]
            rank = {t.name: activate_topk if t.ratio is None else suppress_rank for t in users}
            sketched = [t for t in users if rank[t.name] and rank[t.name] + oversample < min(sizes[t.part], dim)]
            exact_parts = [p for p in sizes if any(t.part == p for t in users if t not in sketched)]
            if exact_parts:
                j = jacobian(_select(fn, sizes, exact_parts), u, mode=mode, chunk=chunk)
                if not torch.isfinite(j).all():
                    raise FloatingPointError(f"criterion {key}: its Jacobian has NaN/Inf entries at this sample")
                rows = dict(zip(exact_parts, torch.split(j, [sizes[p] for p in exact_parts])))
                grams.update({t.name: gram(rows[t.part]) for t in users if t not in sketched})
                m = len(j)
                passes[key] = dim if mode == "jvp" or (mode == "auto" and m >= dim) else m
            for t in sketched:
                part_fn = _select(fn, sizes, [t.part])
                if t.ratio is None:
                    grams[t.name], passes[t.name] = topk_gram(part_fn, u, rank[t.name], oversample, chunk=chunk)
                else:
                    sketch = range_sketch(part_fn, u, rank[t.name], oversample, ratio=t.ratio, chunk=chunk)
                    grams[t.name], passes[t.name] = sketch.gram(), sketch.passes
    return grams


def analyzer_settings(terms: Terms) -> list[str]:
    """Each analyzer's settings that are not weights (its ``extra_repr``: input side, mask or heatmap mode).
    They change the Grams as much as the weights do, so they key the Gram cache."""
    return sorted({f"{type(m).__name__}({m.extra_repr()})" for criterion in terms.criteria.values()
                   for m in criterion.modules() if isinstance(m, (Parser, Landmarker, Pretrained))})


class SampleGrams:
    """The per-sample step of a discovery run: (z, u) -> {term name: JᵀJ}, with the engine options of
    ``conf/config.yaml: engine`` and, when ``cache_dir`` is set, a per-sample Gram cache (engine.cache):
    a sample whose file exists is read instead of computed, so a killed run resumes where it stopped."""

    def __init__(self, generator: Generator, terms: Terms, space: str, mode: str = "auto", chunk: int | None = None,
                 precision: str = "fp32", activate_topk: int | None = None, suppress_rank: int | None = None,
                 oversample: int = 10, cache_dir: str | Path | None = None) -> None:
        check_mode(mode)
        check_precision(precision)
        for name, value in (("activate_topk", activate_topk), ("suppress_rank", suppress_rank)):
            if value is not None and value < 1:
                raise ValueError(f"engine.{name}: must be >= 1 or null (exact), got {value}")
        if oversample < 0:
            raise ValueError(f"engine.oversample: must be >= 0, got {oversample}")
        self.generator, self.terms, self.space = generator, terms, space
        self.options = dict(mode=mode, chunk=chunk, precision=precision, activate_topk=activate_topk,
                            suppress_rank=suppress_rank, oversample=oversample)
        self.cache = None
        if cache_dir is not None:
            what = {"space": space, "terms": [(t.name, t.criterion, t.part) for t in terms.terms],
                    "analyzers": analyzer_settings(terms),
                    "precision": precision, "activate_topk": activate_topk, "suppress_rank": suppress_rank,
                    "oversample": oversample if activate_topk or suppress_rank else None}
            weights = state_hash(generator, *terms.criteria.values())
            self.cache = GramCache(cache_dir, key_of(weights, what), {"weights_sha256": weights, **what},
                                   names=[t.name for t in terms.terms], dim=generator.space_dim(space))

    def __call__(self, z: Tensor, u: Tensor) -> dict[str, Tensor]:
        """Grams at the latent point u [D] of the sample z [z_dim] (z keys the cache)."""
        cached = self.cache.load(z) if self.cache is not None else None
        if cached is not None:
            return {name: g.to(u.device) for name, g in cached.items()}
        grams = sample_grams(self.generator, self.terms, u, self.space, **self.options)
        if self.cache is not None:
            self.cache.save(z, grams)
        return grams


def precision_angles(generator: Generator, terms: Terms, u: Tensor, space: str, mode: str = "auto",
                     chunk: int | None = None, precision: str = "fp32", **_: object) -> dict[str, float]:
    """The measured cost of a reduced precision at u (options: conf ``engine:``): for each suppress term,
    the largest principal angle (degrees) between its significant eigenspaces at ``precision`` and in fp32."""
    return {f"engine/precision_angle_deg/{t.name}":
            precision_error(term_fn(generator, terms, u, space, t.name), u, precision, t.ratio, mode, chunk)["angle_deg"]
            for t in terms.suppress}


def directional_changes(generator: Generator, terms: Terms, u: Tensor, space: str, directions: Tensor) -> dict[str, Tensor]:
    """{term name: ‖J_term v_k‖² per unit step [K]} at u for the columns v_k of ``directions`` [D, K]."""
    tangents = directions.to(u.dtype).T
    out: dict[str, Tensor] = {}
    for key, fn, sizes in criterion_fns(generator, terms, u, space):
        try:
            moved = directional(fn, u, tangents)
        except NotImplementedError:  # an op without forward-mode derivative: J by reverse mode, then J v
            moved = tangents @ jacobian(fn, u, mode="vjp").T
        out.update({name: (rows.double() ** 2).sum(1) for name, rows in _per_term(terms, key, moved, sizes, 1).items()})
    return out
