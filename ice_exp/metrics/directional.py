"""Per-direction metrics accumulated over held-out samples. Evaluation runs on rank 0 alone after the
accumulation, so the meters never synchronise across processes (``sync_on_compute=False``): a sync would
wait for ranks that have already returned."""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from ice_exp.common.linalg import orthonormal


class MeanPerDirection(Metric):
    """Mean over samples of one number per direction (e.g. ‖J_t v_k‖² per unit step, or factor purity)."""

    full_state_update = False

    def __init__(self, num_directions: int) -> None:
        super().__init__(sync_on_compute=False)
        self.add_state("total", default=torch.zeros(num_directions, dtype=torch.float64, device="cpu"), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64, device="cpu"), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        self.total += values.to(self.total)
        self.count += 1

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


def factor_purity(factor_jacobian: Tensor, group: list[int], directions: Tensor) -> Tensor:
    """‖J_group v‖² / ‖J_all v‖² per direction [K], from d factors / d latent [F, D] at one sample:
    1 when a direction changes only the group's factors."""
    moved = (factor_jacobian.double() @ directions.double()) ** 2  # [F, K]
    return moved[group].sum(0) / moved.sum(0).clamp_min(1e-30)


def local_coverage(factor_jacobian: Tensor, group: list[int], truth: Tensor, directions: Tensor) -> Tensor:
    """How much of what the local true subspace ``truth`` [D, k] (orthonormal) can do to the group's factors
    the found subspace reaches at this sample: tr(J P_T P_V P_T Jᵀ) / tr(J P_T Jᵀ), J the group's rows, P_T
    and P_V the projectors onto the truth and onto the span of ``directions``. In [0, 1]: 1 when the found
    span contains the local truth, cos²θ for a span tilted by θ inside the group's reach, 0 when it is
    orthogonal to the truth; what a direction moves outside the group does not count (purity scores that)."""
    j, t = factor_jacobian.double()[group], truth.double()
    if directions.shape[1] == 0 or t.shape[1] == 0:
        return torch.zeros((), dtype=torch.float64)
    q = orthonormal(directions.double())
    return (j @ t @ (t.T @ q)).square().sum() / (j @ t).square().sum().clamp_min(1e-30)


def activate_share(gain: Tensor, leaks: list[Tensor]) -> Tensor:
    """g_k / (g_k + Σ_t l_t,k) per direction [K], from each direction's activate gain g_k and suppress leaks
    l_t,k, each relative to random unit directions (run.evaluation.evaluate): the share of what a direction
    changes, each criterion in units of a random step's change, that falls on the activate criterion. Factor
    purity's analogue read through the analyzers, so it needs no ground truth: 1 for a direction that moves
    no suppress term, 1 / (1 + #terms) for a random one."""
    gain = gain.double()
    total = gain + sum((leak.double() for leak in leaks), torch.zeros_like(gain))
    return gain / total.clamp_min(1e-30)


def agreement(mean_projector: Tensor, directions: Tensor) -> float:
    """tr(Qᵀ P̄ Q) / k for an orthonormal basis Q [D, k] of ``directions`` and the mean projector P̄ onto the
    training faces' own solutions (solvers.consensus): how much of the found subspace those local solutions
    hold, on average; 1 when every face's solution contains it. Needs no ground truth (NaN for no direction)."""
    if directions.shape[1] == 0:
        return float("nan")
    q = orthonormal(directions.double())
    return float(torch.trace(q.T @ mean_projector.double() @ q)) / q.shape[1]
