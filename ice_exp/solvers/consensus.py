"""ICE by consensus of local solutions (docs/worlds.md: curved worlds).

Summed over samples, ICE's near-null spaces stay exact only while the factor map is linear: in a curved world
each training face contributes its own local truth, and the summed problem returns one per face (more samples,
more directions). Here ICE (early projection) is solved at each training face on its own Grams, where the
local structure is what ICE assumes; the run averages the projectors Q_iQ_iᵀ onto those local solutions
(a local view, accumulated like a Gram). A direction lies in the majority of the local solutions when the
mean projector has an eigenvalue above 1/2 along it: those eigenvectors are the answer. The threshold is a
majority, not a tuned ratio: a true direction, tilted by θ between faces, scores about cos²θ (≥ 0.8 at 25°);
a direction that only some faces' solutions hold (a factor that is flat at those faces, one face's own
local truth) scores about the share of those faces. The number of directions follows from the data.

Where the faces agree (a linear world, or samples too close to see the curve), the summed problem is
exact and a single face's solution is not (a factor flat at that face goes unsuppressed there and tilts
its directions by a few degrees): when ICE on the summed Grams returns exactly as many directions as the
majority holds, its solution is returned; otherwise (one local truth per face) the majority's.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ice_exp.common.linalg import orthonormal
from ice_exp.config.rules import SOLVER, enforce
from ice_exp.config.schema import ConsensusSolver
from ice_exp.solvers.base import Problem, Solution, Solver, ranked
from ice_exp.solvers.ice import EarlyProjection


class Consensus(Solver):
    """Directions in the majority (mean projector eigenvalue > ``vote``) of the per-face ICE solutions
    (early projection with ``rho``, ``null_space``, ``intersection_tol``, each suppress term's own ratio),
    ranked by their activate gain on the summed Gram (σ = vᵀM_act v); or the same ICE on the summed Grams
    when it returns as many directions. Needs the Grams and the view accumulated with them
    (``Problem.views[view_key]``)."""

    def __init__(self, rho: float = ConsensusSolver.rho, null_space: str = ConsensusSolver.null_space.value,
                 intersection_tol: float = ConsensusSolver.intersection_tol, vote: float = ConsensusSolver.vote,
                 max_directions: int | None = ConsensusSolver.max_directions) -> None:
        enforce({"vote": SOLVER["vote"]}, {"vote": vote}, "solver.")
        self.local = EarlyProjection(rho=rho, null_space=null_space, intersection_tol=intersection_tol)
        self.vote, self.max_directions = vote, max_directions
        self.view_key = f"consensus(rho={rho}, null_space={null_space}, intersection_tol={intersection_tol})"

    def local_view(self, problem: Problem) -> Tensor:
        """Q Qᵀ, Q an orthonormal basis of this sample's ICE solution."""
        q = self.local(problem).directions
        q = orthonormal(q) if q.shape[1] else q.double()
        return q @ q.T

    def __call__(self, problem: Problem) -> Solution:
        if self.view_key not in problem.views:
            raise ValueError("solver consensus needs the local views accumulated with the Grams "
                             "(ice_exp.engine.accumulate.accumulate(..., views=[solver]))")
        share, vectors = torch.linalg.eigh(problem.views[self.view_key].double())
        kept = vectors[:, share > self.vote]
        summed = self.local(problem)
        if summed.directions.shape[1] == kept.shape[1]:  # the faces agree: the summed problem is exact
            return ranked(summed.sigma, summed.directions, self.max_directions)
        act = problem.activate.double()
        return ranked(((act @ kept) * kept).sum(0), kept, self.max_directions)
