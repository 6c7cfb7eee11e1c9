"""Per-sample work of a discovery run: the Gram matrix JᵀJ of every term (optionally cached), and
directional changes."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from ice_exp.config.rules import ENGINE, enforce
from ice_exp.config.schema import Engine
from ice_exp.criteria.terms import Term, Terms
from ice_exp.engine.cache import GramCache, key_of, module_settings, source_hash, state_hash
from ice_exp.engine.frame import FramePasses, Part
from ice_exp.engine.jacobian import check_mode, gram, squared_change
from ice_exp.engine.precision import check_precision, precision_error, precision_scope
from ice_exp.engine.sketch import range_sketch, topk_gram
from ice_exp.generators.base import Generator


def criterion_fns(generator: Generator, terms: Terms, u: Tensor, space: str
                   ) -> Iterator[tuple[str, Callable[[Tensor], Tensor], dict[str, int]]]:
    """For each criterion alone: (key, fn: u [D] -> its used parts concatenated [m], {part: size}) at u,
    prepared on the frame at u (benchmarks that time or count one criterion)."""
    frames = FramePasses(generator, terms, u, space)
    for key in terms.criteria:
        parts = frames.parts([key])
        yield key, frames.fn(parts), {p: frames.sizes[(key, p)] for _, p in parts}


def term_fn(generator: Generator, terms: Terms, u: Tensor, space: str, name: str) -> Callable[[Tensor], Tensor]:
    """v [D] -> the outputs [m] of the term ``name``, its criterion prepared on the frame at u."""
    term = next(t for t in terms.terms if t.name == name)
    return FramePasses(generator, terms, u, space).fn([(term.criterion, term.part)])


def _reads(term: Term) -> list[Part]:
    """The parts a term's Gram is made of: its own, and its twin's with cross-check analyzers."""
    return [(term.criterion, term.part)] + ([(term.twin, term.part)] if term.twin else [])


EXACT = "exact"  # the ``passes`` key of the exact terms' shared Jacobian


def sample_grams(generator: Generator, terms: Terms, u: Tensor, space: str, mode: str = "auto",
                 chunk: int | None = None, precision: str = "fp32", activate_topk: int | None = None,
                 suppress_rank: int | None = None, oversample: int = 10,
                 passes: dict[str, int] | None = None) -> dict[str, Tensor]:
    """{term name: J_termᵀ J_term [D, D] float64} at one latent point u [D] (options: conf ``engine:``).

    The exact terms share one Jacobian of all their parts (``mode``, ``chunk``), every criterion reading
    one rendering per pass (engine.frame). With ``activate_topk`` the activate term is its rank-K
    approximation by subspace iteration, and with ``suppress_rank`` each suppress term is a randomised
    range sketch grown until its null space at the term's ratio is kept (engine.sketch), each pass
    rendering once for its criterion; a term whose first sketch would already need as many passes as the
    exact route (its rows, or the width of the point the exact passes run at: ``Generator.code``) stays
    exact. ``passes``, when given, receives the passes spent: ``EXACT`` for the shared
    Jacobian, the term name for each sketched term."""
    check_precision(precision)
    passes = {} if passes is None else passes
    grams: dict[str, Tensor] = {}
    with precision_scope(precision, u.device):
        frames = FramePasses(generator, terms, u, space)
        rank = {t.name: activate_topk if t.ratio is None else suppress_rank for t in terms.terms}
        exact_passes = frames.point.numel()
        sketched = [t for t in terms.terms
                    if rank[t.name] and rank[t.name] + oversample < min(frames.sizes[(t.criterion, t.part)], exact_passes)]
        if twinned := [t.name for t in sketched if t.twin]:
            raise ValueError(f"engine.activate_topk / engine.suppress_rank: terms {twinned} read cross-check analyzers, "
                             "whose Gram needs both exact Jacobians; set them to null or drop crosscheck.parser / .landmarker")
        exact = [p for p in frames.parts() if any(p in _reads(t) for t in terms.terms if t not in sketched)]
        if exact:
            j, passes[EXACT] = frames.jacobian(exact, mode, chunk)
            rows = dict(zip(exact, torch.split(j, [frames.sizes[p] for p in exact])))
            bad = next((key for (key, _), r in rows.items() if not torch.isfinite(r).all()), None)
            if bad is not None:
                raise FloatingPointError(f"criterion {bad}: its Jacobian has NaN/Inf entries at this sample")
            grams.update({t.name: gram(*(rows[p] for p in _reads(t)), margin=terms.margin) for t in terms.terms if t not in sketched})
        for t in sketched:
            part_fn = frames.fn([(t.criterion, t.part)])
            if t.ratio is None:
                grams[t.name], passes[t.name] = topk_gram(part_fn, u, rank[t.name], oversample, chunk=chunk)
            else:
                sketch = range_sketch(part_fn, u, rank[t.name], oversample, ratio=t.ratio, chunk=chunk)
                grams[t.name], passes[t.name] = sketch.gram(), sketch.passes
    return grams


class SampleGrams:
    """The per-sample step of a discovery run: (z, u) -> {term name: JᵀJ}, with the engine options of
    ``conf/config.yaml: engine`` and, when ``cache_dir`` is set, a per-sample Gram cache (engine.cache):
    a sample whose file exists is read instead of computed, so a killed run resumes where it stopped."""

    def __init__(self, generator: Generator, terms: Terms, space: str, mode: str = Engine.mode.value,
                 chunk: int | None = Engine.chunk, precision: str = Engine.precision.value,
                 activate_topk: int | None = Engine.activate_topk, suppress_rank: int | None = Engine.suppress_rank,
                 oversample: int = Engine.oversample, cache_dir: str | Path | None = Engine.cache_dir) -> None:
        check_mode(mode)
        check_precision(precision)
        enforce(ENGINE, {"chunk": chunk, "activate_topk": activate_topk, "suppress_rank": suppress_rank,
                         "oversample": oversample}, "engine.")
        self.generator, self.terms, self.space, self.cache_dir = generator, terms, space, cache_dir
        self.options = dict(mode=mode, chunk=chunk, precision=precision, activate_topk=activate_topk,
                            suppress_rank=suppress_rank, oversample=oversample)
        self.cache = None
        if cache_dir is not None:
            what = {"space": space, "terms": [(t.name, t.criterion, t.part, t.twin) for t in terms.terms], "margin": terms.margin,
                    "settings": module_settings(generator, *terms.criteria.values()),
                    "code_sha256": source_hash(),
                    "precision": precision, "activate_topk": activate_topk, "suppress_rank": suppress_rank,
                    "oversample": oversample if activate_topk or suppress_rank else None}
            weights = state_hash(generator, *terms.criteria.values())
            self.cache = GramCache(cache_dir, key_of(weights, what), {"weights_sha256": weights, **what},
                                   names=[t.name for t in terms.terms], dim=generator.space_dim(space))

    def exact(self) -> SampleGrams:
        """The same engine and cache without the low-rank options (the evaluation's Grams must be exact)."""
        return SampleGrams(self.generator, self.terms, self.space, cache_dir=self.cache_dir,
                           **{**self.options, "activate_topk": None, "suppress_rank": None})

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
    """{term name: ‖J_term v_k‖² per unit step [K]} at u for the columns v_k of ``directions`` [D, K]
    (with a twin, v_kᵀ of its cross-checked Gram v_k: jacobian.gram); all probes and all criteria in one forward
    pass per chunk (engine.frame)."""
    tangents = directions.to(u.dtype).T
    frames = FramePasses(generator, terms, u, space)
    parts = frames.parts()
    moved = dict(zip(parts, torch.split(frames.directional(parts, tangents), [frames.sizes[p] for p in parts], dim=1)))
    return {t.name: squared_change(*(moved[p] for p in _reads(t)), margin=terms.margin) for t in terms.terms}
