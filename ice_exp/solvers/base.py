"""What every solver takes and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ice_exp.generators.base import Generator

VIEW = "view:"  # prefix of an accumulated local view among the accumulated Grams


@dataclass
class SuppressTerm:
    name: str
    gram: Tensor  # [D, D] float64
    ratio: float  # eigenvalues below ratio * λ_max count as null


@dataclass
class Problem:
    """The Gram matrices of one run (docs/method.md §4) plus what generator-based peers need (SeFa and GANSpace
    read the generator's weights or samples and ignore the Grams; Gram-based solvers ignore these)."""

    activate: Tensor | None = None  # [D, D] float64; None when the run's solver needs no Grams
    suppress: list[SuppressTerm] = field(default_factory=list)
    generator: Generator | None = None
    space: str | None = None  # the space the directions must live in (dim D)
    views: dict[str, Tensor] = field(default_factory=dict)  # {Solver.view_key: mean over samples of local_view}

    @staticmethod
    def of(grams: dict[str, Tensor], terms: Any, generator: Generator | None = None, space: str | None = None) -> "Problem":
        """The problem of accumulated Grams {term name: M} (and {VIEW + view key: mean local view}) for
        ``terms`` (ice_exp.criteria.terms.Terms)."""
        return Problem(activate=grams[terms.activate.name],
                       suppress=[SuppressTerm(t.name, grams[t.name], t.ratio) for t in terms.suppress],
                       generator=generator, space=space,
                       views={k.removeprefix(VIEW): v for k, v in grams.items() if k.startswith(VIEW)})

    def background(self) -> Tensor:
        """The peers' single background Gram M_b = Σ_j M_j / λ_max(M_j) over the suppress terms (zero without
        any). Each term is scaled to unit λ_max because terms come in different units (px² of landmarks,
        colour² of pixels): an unscaled sum would let one term hide the others. Each term enters by its PSD part:
        a cross-Gram's negative eigenvalues (criteria.terms: cross-check analyzers) are the two analyzers'
        disagreement, not a change."""
        total = torch.zeros_like(self.activate, dtype=torch.float64)
        for term in self.suppress:
            lam, q = torch.linalg.eigh(term.gram.double())
            total += (q * lam.clamp_min(0)) @ q.T / lam[-1].clamp_min(1e-300)
        return total


@dataclass
class Solution:
    sigma: Tensor  # [K] each direction's score, descending (ICE: its activate gain; peers: their own objective)
    directions: Tensor  # [D, K] unit columns

    def first(self, k: int | None) -> "Solution":
        """The first k directions (all with k None): a fixed count for comparing solvers that return a set number."""
        return self if k is None else Solution(self.sigma[:k], self.directions[:, :k])


def ranked(sigma: Tensor, directions: Tensor, max_directions: int | None = None, rho: float = 0.0) -> Solution:
    """Directions sorted by score σ, descending, keeping σ > rho·σ_max (all with rho = 0), at most
    ``max_directions``."""
    order = torch.argsort(sigma, descending=True)
    sigma, directions = sigma[order], directions[:, order]
    keep = sigma > rho * sigma[:1].clamp_min(0) if rho > 0 else torch.ones_like(sigma, dtype=torch.bool)
    return Solution(sigma[keep][:max_directions], directions[:, keep][:, :max_directions])


class Solver:
    """Subclasses implement ``__call__(problem) -> Solution`` and say in their docstring what they need."""

    needs_grams: bool = True  # False: it reads only the generator (SeFa, GANSpace), and a run skips the accumulation
    view_key: str | None = None  # set by solvers that also need the mean over samples of local_view (Problem.views)

    def __call__(self, problem: Problem) -> Solution:
        raise NotImplementedError

    def local_view(self, problem: Problem) -> Tensor:
        """[D, D]: what this solver reads of one sample's Grams, averaged over the samples by the accumulation."""
        raise NotImplementedError


def views_of(solvers: list[Solver], terms: Any, generator: Generator | None, space: str | None) -> dict[str, Any]:
    """{VIEW + view key: one sample's Grams -> that solver's local view} for the solvers that have one, for
    :func:`ice_exp.engine.accumulate.accumulate` (solvers with the same view share it)."""
    def view(solver: Solver) -> Any:
        return lambda grams: solver.local_view(Problem.of(grams, terms, generator, space))

    return {VIEW + s.view_key: view(s) for s in solvers if s.view_key is not None}
