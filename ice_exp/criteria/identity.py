"""Identity embedding: keep who the person is (docs/method.md §2; suppress only)."""
from __future__ import annotations

from torch import Tensor, nn

from ice_exp.criteria.base import Criterion, State
from ice_exp.generators.base import Frame


class IdentityEmbedding(Criterion):
    """Part ``embedding`` [B, 512]: the identity model's L2-normalised embedding (ArcFace).

    Use it only as a suppress term, as the seed does: an embedding on the unit sphere has no meaningful
    "change here" direction to activate, and activating it would reward any change that fools the
    recogniser (including adversarial noise) rather than a visible edit."""

    parts = ("embedding",)
    needs = ("identity",)  # analyzers the run hands it (ice_exp.criteria.build_criterion)

    def __init__(self, identity: nn.Module) -> None:
        super().__init__()
        self.identity = identity

    def forward(self, frame: Frame, state: State) -> dict[str, Tensor]:
        return {"embedding": self.identity(frame).flatten(1)}
