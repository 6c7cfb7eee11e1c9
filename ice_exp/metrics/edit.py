"""Metrics of one edit x = G(u) -> x' = G(u + t·v), averaged over images (docs/method.md §5).

Each class is a torchmetrics Metric (sums and counts as states) that never syncs across processes: edits are
scored after the accumulation, by one process. Keep one instance per (direction, step). Images are in ~[0, 1]
as criteria see them, landmarks in image pixels.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

OUTER_EYE_CORNERS = (36, 45)  # iBUG-68 indices whose distance normalises landmark motion
FVA_THRESHOLD = 0.5  # a pair keeps its identity when the cosine *similarity* exceeds this


class _Means(Metric):
    """Running means of a few named per-image values."""

    full_state_update = False
    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(sync_on_compute=False)
        for name in self.names:
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, **values: Tensor) -> None:
        for name, v in values.items():
            state = getattr(self, name)
            setattr(self, name, state + v.to(state).sum())
        self.count += next(iter(values.values())).numel()

    def compute(self) -> dict[str, float]:
        return {name: float(getattr(self, name) / self.count.clamp_min(1)) for name in self.names}


class TermChange(_Means):
    """``change`` = mean over images of ‖c(x') − c(x)‖², the squared change of one criterion part's
    outputs [B, m] (constants prepared on x). For the activate term this is the edit's target gain; for a
    suppress term, its leakage into that criterion."""

    names = ("change",)

    def update(self, before: Tensor, after: Tensor) -> None:
        self._add(change=((after - before).double() ** 2).flatten(1).sum(1))


def pixel_change(before: Tensor, after: Tensor) -> Tensor:
    """D [B, 1, R, R] = mean over channels |x' − x|."""
    return (after - before).abs().mean(1, keepdim=True)


def locality(change: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per image: ``ratio`` = Σ D·M / Σ D, ``inside`` = Σ D·M / Σ M, ``outside`` = Σ D·(1−M) / Σ(1−M)."""
    d, m = change.flatten(1).double(), mask.flatten(1).double()
    tiny = 1e-30
    return {"ratio": (d * m).sum(1) / d.sum(1).clamp_min(tiny), "inside": (d * m).sum(1) / m.sum(1).clamp_min(tiny),
            "outside": (d * (1 - m)).sum(1) / (1 - m).sum(1).clamp_min(tiny)}


class PixelLocality(_Means):
    """D = mean over channels of |x' − x| per pixel; M = the parser's hard mask of the target region on x.
    ``ratio`` = Σ D·M / Σ D, the share of the change inside the region (for a change spread evenly it is
    the region's share of the image); ``inside`` = Σ D·M / Σ M and ``outside`` = Σ D·(1−M) / Σ(1−M), the
    mean change per pixel in and out. Per image, then averaged (an unchanged image counts ratio 0)."""

    names = ("ratio", "inside", "outside")

    def update(self, x: Tensor, x_edit: Tensor, mask: Tensor) -> None:
        self._add(**locality(pixel_change(x, x_edit), mask))


class LandmarkSplit(_Means):
    """Displacement ‖p'_i − p_i‖ of each landmark divided by the inter-ocular distance ‖p_36 − p_45‖ on x
    (outer eye corners); ``target`` = its mean over the landmark group, ``others`` = over the remaining
    landmarks, per image and averaged. ``split`` (in ``compute``) = target / others of the averages: > 1
    when the edit moves the group more than the rest."""

    names = ("target", "others")

    def __init__(self, group: list[int] | tuple[int, ...], num_points: int = 68) -> None:
        super().__init__()
        self.group = list(group)
        self.rest = [i for i in range(num_points) if i not in self.group]

    def update(self, points: Tensor, points_edit: Tensor) -> None:
        a, b = OUTER_EYE_CORNERS
        iod = (points[:, a] - points[:, b]).norm(dim=-1, keepdim=True).clamp_min(1e-12)
        moved = (points_edit - points).norm(dim=-1) / iod  # [B, 68]
        self._add(target=moved[:, self.group].mean(1), others=moved[:, self.rest].mean(1))

    def compute(self) -> dict[str, float]:
        out = super().compute()
        return {**out, "split": out["target"] / max(out["others"], 1e-30)}


class IdentityCosine(_Means):
    """cos = ⟨e, e'⟩ / (‖e‖‖e'‖), the cosine *similarity* of the identity embeddings of x and x' (not the
    cosine distance 1 − cos that one public FVA implementation thresholds). ``cosine`` = its mean;
    ``fva`` = the share of pairs with cos > 0.5 (face verification accuracy)."""

    names = ("cosine", "fva")

    def update(self, embedding: Tensor, embedding_edit: Tensor) -> None:
        cos = torch.nn.functional.cosine_similarity(embedding.flatten(1).double(), embedding_edit.flatten(1).double(), dim=1)
        self._add(cosine=cos, fva=(cos > FVA_THRESHOLD).double())
