"""Per-direction metrics accumulated over held-out samples. Evaluation runs on rank 0 alone after the
accumulation, so the meters never synchronise across processes (``sync_on_compute=False``): a sync would
wait for ranks that have already returned."""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MeanPerDirection(Metric):
    """Mean over samples of one number per direction (e.g. ‖J_t v_k‖² per unit step, or factor purity)."""

    full_state_update = False

    def __init__(self, num_directions: int) -> None:
        super().__init__(sync_on_compute=False)
        self.add_state("total", default=torch.zeros(num_directions, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

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
