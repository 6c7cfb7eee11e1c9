"""Running mean of per-sample Gram matrices, as a torchmetrics Metric so that DDP sums it across processes."""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class GramMean(Metric):
    """M = (1/N) Σ_n J_nᵀ J_n in float64; states are summed over processes, so a DDP run that splits the
    samples gives the same M as one process."""

    full_state_update = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, gram: Tensor) -> None:
        if not torch.isfinite(gram).all():
            raise FloatingPointError("JᵀJ has NaN or Inf entries: the criterion or generator produced non-finite gradients")
        self.total += gram.to(self.total)
        self.count += 1

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError("no sample was accumulated (samples.indices is empty?)")
        return self.total / self.count
