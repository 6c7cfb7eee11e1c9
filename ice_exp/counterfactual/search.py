"""The counterfactual search inside one subspace (docs/method.md §5): u' = u + B λ, λ ∈ R^K from 0.

Default = the seed's search: SGD (lr 1, momentum 0.9, weight decay 1e-3) on the logit margin
``logit_source − logit_target`` of the explained head, a fixed number of iterations, no bound and no stop.
Options: a target-probability stop (a sample is frozen once p(target) reaches it), a bound on ‖B λ‖ (λ is
rescaled onto the ball after every step, the exact projection for ICE's orthonormal directions), a fixed
target class or ``"flip"`` (the other class of each sample's own prediction), any latent space. All
samples are searched in one batch; the edit is B λ by construction, so it never leaves the subspace.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ice_exp.config.rules import FLIP, SEARCH, enforce
from ice_exp.config.schema import Counterfactual
from ice_exp.counterfactual.classifiers import Classifier
from ice_exp.generators.base import Frame, Generator


@dataclass(frozen=True)
class SearchConfig:
    """The search's settings; defaults: the schema's (conf/counterfactual/default.yaml, the seed's search)."""

    iterations: int = Counterfactual.iterations
    lr: float = Counterfactual.lr
    momentum: float = Counterfactual.momentum
    weight_decay: float = Counterfactual.weight_decay
    target_class: int | str = Counterfactual.target_class  # a class index of the explained head, or "flip"
    stop_probability: float | None = Counterfactual.stop_probability  # freeze a sample once p(target) >= this (None: never)
    norm_bound: float | None = Counterfactual.norm_bound  # keep ‖B λ‖ <= this (None: unbounded, as the seed)

    def __post_init__(self) -> None:
        enforce(SEARCH, asdict(self), "counterfactual.")  # the rules the config check applies before any compute


@dataclass
class SearchResult:
    """Everything measured afterwards; tensors are detached, one row per sample."""

    delta: Tensor  # [B, D] the edit B λ
    lam: Tensor  # [B, K]
    frame_before: Frame
    frame_after: Frame
    logits_before: Tensor  # [B, H, C] every head
    logits_after: Tensor
    head: int  # index of the explained head
    target: Tensor  # [B] target class
    iterations_to_flip: Tensor  # [B] steps until the prediction first was the target (nan: never, or not eligible)

    def probability(self, logits: Tensor) -> Tensor:
        return logits[:, self.head].softmax(-1).gather(1, self.target[:, None])[:, 0]

    @property
    def p_before(self) -> Tensor:
        return self.probability(self.logits_before)

    @property
    def p_after(self) -> Tensor:
        return self.probability(self.logits_after)

    @property
    def eligible(self) -> Tensor:
        """Samples not predicted as the target to begin with: the ones that can flip."""
        return self.logits_before[:, self.head].argmax(-1) != self.target

    @property
    def flipped(self) -> Tensor:
        return self.eligible & (self.logits_after[:, self.head].argmax(-1) == self.target)


def _targets(logits: Tensor, target_class: int | str) -> Tensor:
    classes = logits.shape[-1]
    if target_class == FLIP:
        if classes != 2:
            raise ValueError(f"counterfactual.target_class: {FLIP!r} needs a two-class head, this one has {classes}")
        return 1 - logits.argmax(-1)
    if target_class >= classes:
        raise ValueError(f"counterfactual.target_class: {target_class} is not a class of a {classes}-class head")
    return torch.full(logits.shape[:1], int(target_class), dtype=torch.long, device=logits.device)


def counterfactual_search(generator: Generator, classifier: Classifier, u: Tensor, space: str, directions: Tensor,
                          cfg: SearchConfig, on_step: Callable[[], object] = lambda: None) -> SearchResult:
    """Search λ [B, K] for the latent points ``u`` [B, D] of ``space`` along ``directions`` [D, K];
    ``on_step`` is called after every iteration (a progress bar)."""
    head, basis = classifier.target_index, directions.to(u)
    with torch.no_grad():
        frame_before = generator.decode(u, space)
        logits_before = classifier(frame_before.image)
    own = logits_before[:, head]
    target = _targets(own, cfg.target_class)
    rows = torch.arange(len(u), device=u.device)
    source = own.scatter(1, target[:, None], float("-inf")).argmax(-1)  # the best non-target class
    eligible = own.argmax(-1) != target

    lam = torch.zeros(len(u), basis.shape[1], dtype=u.dtype, device=u.device, requires_grad=True)
    opt = torch.optim.SGD([lam], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    active = torch.ones(len(u), dtype=torch.bool, device=u.device)
    flip_at = torch.full((len(u),), float("nan"), device=u.device)

    def record(step: int, logits: Tensor) -> None:
        nonlocal active
        first = eligible & flip_at.isnan() & (logits.argmax(-1) == target)
        flip_at[first] = float(step)
        if cfg.stop_probability is not None:
            active = active & (logits.softmax(-1)[rows, target] < cfg.stop_probability)

    steps = 0
    while steps < cfg.iterations:
        logits = classifier(generator.decode(u + lam @ basis.T, space).image)[:, head]
        record(steps, logits.detach())
        if not active.any():
            break
        loss = ((logits[rows, source] - logits[rows, target]) * active).sum()
        (lam.grad,) = torch.autograd.grad(loss, lam)  # no gradients accumulate in generator or classifier
        previous = lam.detach().clone()
        opt.step()
        with torch.no_grad():
            lam.copy_(torch.where(active[:, None], lam, previous))  # frozen samples stay where they stopped
            if cfg.norm_bound is not None:
                lam.mul_((cfg.norm_bound / (lam @ basis.T).norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1))
        steps += 1
        on_step()

    with torch.no_grad():
        delta = lam.detach() @ basis.T
        frame_after = generator.decode(u + delta, space)
        logits_after = classifier(frame_after.image)
        record(steps, logits_after[:, head])
    return SearchResult(delta=delta, lam=lam.detach(), frame_before=frame_before, frame_after=frame_after,
                        logits_before=logits_before, logits_after=logits_after, head=head, target=target,
                        iterations_to_flip=flip_at)
