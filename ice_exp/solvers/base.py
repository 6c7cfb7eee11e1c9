"""What every solver takes and returns."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class SuppressTerm:
    name: str
    gram: Tensor  # [D, D] float64
    ratio: float  # eigenvalues below ratio * λ_max count as null


@dataclass
class Problem:
    """The Gram matrices of one run (method.md §4) plus what data-driven peers need."""

    activate: Tensor  # [D, D] float64
    suppress: list[SuppressTerm] = field(default_factory=list)


@dataclass
class Solution:
    sigma: Tensor  # [K] the activate gain of each direction, descending
    directions: Tensor  # [D, K] unit columns


class Solver:
    """Subclasses implement ``__call__(problem) -> Solution`` and say in their docstring what they need."""

    def __call__(self, problem: Problem) -> Solution:
        raise NotImplementedError
