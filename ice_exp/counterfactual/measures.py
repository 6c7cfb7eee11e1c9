"""Per-sample measures of a counterfactual (docs/method.md §5; docs/counterfactual.md); every measure is a tensor [B] over samples.

- ``p_before`` / ``p_after`` / ``dp``: probability of the target class of the explained head, and its change.
- ``eligible``: the sample was not predicted as the target to begin with; ``flipped``: eligible and now is.
- ``iterations_to_flip``: SGD steps until the prediction first was the target (nan when it never was).
- ``norm_du``: ‖Δu‖ = ‖B λ‖ in the subspace's latent space (proximity).
- ``pixel_l1``: mean over pixels and channels of |x' − x| (x in ~[0, 1]; resolution-independent).
- ``locality`` = ΣD·M / ΣD with D = mean over channels |x' − x| and M the hard mask of the subspace's
  task region on x (conf/task: its regions, dilated); ``change_in`` / ``change_out`` = mean D inside / outside M (nan without a region).
- ``mnac``: with several heads, the number of other heads whose thresholded (argmax) prediction changed.
- ``change/<term>``: ‖c_t(x') − c_t(x)‖ of every term of the discovery run (activate and suppress), with the
  criterion's constants (masks, boxes) prepared on x as in discovery.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.counterfactual.search import SearchResult
from ice_exp.criteria.terms import Terms
from ice_exp.generators.base import Frame
from ice_exp.metrics.edit import locality, pixel_change


def mnac(logits_before: Tensor, logits_after: Tensor, head: int) -> Tensor:
    """Number of heads other than ``head`` whose argmax prediction changed [B] (logits [B, H, C])."""
    changed = logits_before.argmax(-1) != logits_after.argmax(-1)
    changed[:, head] = False
    return changed.sum(1).to(logits_before.dtype)


def term_changes(terms: Terms, before: Frame, after: Frame) -> dict[str, Tensor]:
    """‖c_t(x') − c_t(x)‖ per term of a discovery run."""
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for key, criterion in terms.criteria.items():
            state = criterion.prepare(before)
            parts_before, parts_after = terms.outputs(key, before, state), terms.outputs(key, after, state)
            for term in (t for t in terms.terms if t.criterion == key):
                out[f"change/{term.name}"] = (parts_after[term.part] - parts_before[term.part]).norm(dim=1)
    return out


def region_mask(task: Any | None, parser: Parser | None, frame: Frame) -> Tensor | None:
    """M [B, 1, R, R]: the parser's mask of the task's region (conf/task), dilated as the task says; None
    without a task or a parser."""
    if task is None or parser is None:
        return None
    with torch.no_grad():
        return parser.region_mask(frame, list(task["region"]), "dilate", task["dilation"])


def measure(result: SearchResult, terms: Terms | None = None, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Every per-sample measure of one subspace's search (see the module docstring)."""
    before, after = result.frame_before.image, result.frame_after.image
    p_before, p_after = result.p_before, result.p_after
    out = {"p_before": p_before, "p_after": p_after, "dp": p_after - p_before,
           "eligible": result.eligible.to(p_before.dtype), "flipped": result.flipped.to(p_before.dtype),
           "iterations_to_flip": result.iterations_to_flip.to(p_before), "norm_du": result.delta.norm(dim=1).to(p_before),
           "pixel_l1": (after - before).abs().flatten(1).mean(1)}
    if mask is not None:
        shares = locality(pixel_change(before, after), mask)
        out.update({"locality": shares["ratio"].to(p_before), "change_in": shares["inside"].to(p_before),
                    "change_out": shares["outside"].to(p_before)})
    else:
        out.update({k: torch.full_like(p_before, float("nan")) for k in ("locality", "change_in", "change_out")})
    if result.logits_before.shape[1] > 1:
        out["mnac"] = mnac(result.logits_before, result.logits_after, result.head)
    if terms is not None:
        out.update(term_changes(terms, result.frame_before, result.frame_after))
    return {k: v.detach().float().cpu() for k, v in out.items()}
