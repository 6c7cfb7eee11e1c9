"""The toyface attribute: a known rule over factors, the ground truth of a counterfactual explanation.

class 1 ⇔ Σ_f weight_f · factor_f > threshold. Only edits that move the rule's factors can flip it, so the
subspaces whose true factor groups hold a rule factor should flip a classifier trained on the rule, and the
others should not; :func:`flippable` picks the faces on which that is the whole truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ice_exp.generators.toyface.factors import FACTORS, factor_index

REACH = 0.9  # how far a rule factor may be moved, towards the other class (factors live in (-1, 1))


@dataclass(frozen=True)
class AttrRule:
    """class 1 ⇔ Σ_f weights[f] · factor_f > threshold (factors in (-1, 1), toyface names)."""

    weights: dict[str, float]
    threshold: float = 0.0

    def score(self, factors: Tensor) -> Tensor:
        """Signed distance to the decision threshold [B] of factors [B, 20]."""
        w = torch.tensor(list(self.weights.values()), dtype=factors.dtype, device=factors.device)
        return factors[:, factor_index(list(self.weights), key="classifier.rule")] @ w - self.threshold

    def label(self, factors: Tensor) -> Tensor:
        return (self.score(factors) > 0).long()


def flippable(factors: Tensor, rule: AttrRule) -> Tensor:
    """[B] bool: faces whose rule decision each rule factor *alone* can flip (moved to ±REACH towards the other
    class), so that every rule subspace, and no other, can flip them."""
    score = rule.score(factors)
    towards = torch.where(score > 0, -REACH, REACH)
    alone = [(score + rule.weights[n] * (towards - factors[:, FACTORS.index(n)])) * towards.sign() > 0 for n in rule.weights]
    return torch.stack(alone).all(0)
