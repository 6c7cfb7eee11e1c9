"""Evaluation of discovered directions on held-out samples (the metrics: docs/method.md §2-6).

- ``eval/gain``: mean over directions of ‖J_act v‖² / E_r‖J_act r‖², the activate change per unit step
  relative to random unit directions r (> 1: the direction moves the target more than chance).
- ``eval/leak/<term>``: the same ratio for each suppress term (0: the term does not move at all).
- ``eval/skipped_samples``: held-out samples left out because a criterion's region is empty on them.
- ``trust/heldout_share``: the mean over directions of gain / (gain + Σ leaks) on the held-out faces, the
  share of a direction's change (each criterion in units of a random step's) that falls on the activate
  criterion: factor purity's analogue read through the analyzers, with no ground truth;
  ``trust/independent_share`` the same read by the trust analyzers (config ``trust``: a second parser and
  landmarker never used to find the directions), with their gain and leaks as ``trust/independent/...``.
- ``trust/agreement`` (runs that accumulate the training faces' own solutions: solver=ice_consensus): the
  share of the found subspace that those local solutions hold, a trust score without ground truth.
- toyface only: ``gt/principal_angle_max_deg`` (largest principal angle to the true subspace),
  ``gt/dim_found`` / ``gt/dim_true``, ``gt/purity_mean`` (mean over directions and samples of
  ‖J_group v‖² / ‖J_factors v‖²), and the same scores for PCA of M_act as a baseline (``baseline/pca_*``);
  ``gt/coverage_mean`` (mean over samples of how much of the local true subspace's reach on the group's
  factors the found span holds), the same scores on the same samples for the best fixed subspace of the
  true dimension fitted on other faces of the world (``ceiling/*``: what a global subspace fitted elsewhere
  reaches on these faces; ``ceiling_subspace``), ``gt/curvature``;
  ``gt/pass`` = 1 when the run meets the ground-truth bars of its world, else 0: its mean over a sweep is
  the pass rate. Linear world (curvature 0): the true dimension, largest angle < PASS_ANGLE_DEG, purity >
  PASS_PURITY. Curved world (the truth turns between faces, so no global angle can be small): the true
  dimension, purity and coverage each within CEILING_MARGIN of the ceiling's (docs/worlds.md).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ice_exp.common.latents import latent_pool
from ice_exp.common.linalg import best_fixed_subspace, principal_angles
from ice_exp.common.progress import bar_disable
from ice_exp.criteria.base import EmptyMask
from ice_exp.criteria.terms import Terms
from ice_exp.engine.grams import SampleGrams, directional_changes
from ice_exp.generators.base import Generator
from ice_exp.metrics.directional import MeanPerDirection, activate_share, agreement, factor_purity, local_coverage
from ice_exp.solvers.base import Problem, Solution


def random_directions(dim: int, count: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """[dim, count] random unit directions, drawn on the CPU (the same on every device), then moved to ``device``."""
    r = torch.randn(dim, count, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, device="cpu")
    return (r / r.norm(dim=0)).to(device)


def changes_from_grams(exact: SampleGrams, z: Tensor, u: Tensor, probes: Tensor) -> dict[str, Tensor] | None:
    """{term name: ‖J_term v_k‖² = v_kᵀ (J_termᵀJ_term) v_k [K]} from the sample's exact, cached Grams (the
    next run on the same faces, a solver or ratio sweep, then evaluates for free) where they cost at most
    twice the probes' passes (an exact Jacobian takes as many forward passes as the generator's code is
    wide: toyface 20, for 11 probes); None otherwise (one pass per probe is cheaper)."""
    if min(exact.generator.code(u[None], exact.space).shape[1], u.numel()) > 2 * probes.shape[1]:
        return None
    return {name: torch.einsum("dk,de,ek->k", probes, m.to(probes), probes) for name, m in exact(z, u).items()}


def evaluate(generator: Generator, terms: Terms, space: str, solution: Solution, z_eval: Tensor,
             random_count: int = 8, seed: int = 0, grams: SampleGrams | None = None) -> dict[str, Any]:
    """Gain and leakage of each direction per unit step, averaged over the held-out samples ``z_eval``; with
    the run's ``grams`` and their cache on, from the held-out faces' Grams where that pays (``changes_from_grams``)."""
    directions = solution.directions
    k = directions.shape[1]
    probes = torch.cat([directions, random_directions(directions.shape[0], random_count, seed, directions.device)], 1)
    meters = {t.name: MeanPerDirection(probes.shape[1]) for t in terms.terms}
    exact = grams.exact() if grams is not None and grams.cache is not None else None
    skipped = 0
    for z in tqdm(z_eval, desc="evaluating held-out faces", unit="face", disable=bar_disable(), leave=False):
        u = generator.encode(z[None], space)[0].detach()
        try:
            changes = (exact is not None and changes_from_grams(exact, z, u, probes)) or \
                directional_changes(generator, terms, u, space, probes)
        except EmptyMask:  # one face without the region says nothing about the directions: leave it out
            skipped += 1
            continue
        for name, change in changes.items():
            meters[name].update(change)
    out: dict[str, Any] = {"eval/num_directions": k, "eval/skipped_samples": skipped}
    relatives = {}
    for term in terms.terms:
        change = meters[term.name].compute()
        relatives[term.name] = relative = change[:k] / change[k:].mean().clamp_min(1e-30)
        key = "eval/gain" if term.ratio is None else f"eval/leak/{term.name}"
        out[key] = float(relative.mean()) if k else float("nan")
        out[key + "_per_direction"] = relative.tolist()
    share = activate_share(relatives[terms.activate.name], [relatives[t.name] for t in terms.suppress])
    out["trust/heldout_share"] = float(share.mean()) if k else float("nan")
    out["trust/heldout_share_per_direction"] = share.tolist()
    return out


def independent_trust(generator: Generator, trust_terms: Terms, space: str, solution: Solution, z_eval: Tensor) -> dict[str, Any]:
    """The held-out gain, leaks and activate share of ``solution`` read by the trust analyzers (config
    ``trust.parser`` / ``trust.landmarker``: networks trained apart from the run's, never used to find the
    directions), as ``trust/independent/...`` and ``trust/independent_share``: an analyzer's own error that the
    discovery fitted does not carry over to an independent one, a real leak does."""
    for criterion in trust_terms.criteria.values():  # the accumulation moved only the run's own models to its device
        criterion.to(solution.directions.device)
    scores = evaluate(generator, trust_terms, space, solution, z_eval)
    out = {key.replace("heldout", "independent"): value for key, value in scores.items() if key.startswith("trust/heldout_share")}
    out |= {"trust/independent/" + key.removeprefix("eval/"): value for key, value in scores.items()
            if key.startswith(("eval/gain", "eval/leak/"))}
    return out


PASS_ANGLE_DEG = 10.0  # ground-truth bars of a toyface run (docs/worlds.md: the world protocol)
PASS_PURITY = 0.9
CEILING_MARGIN = 0.05  # curved world: held-out purity and coverage may fall this far below the best fixed subspace's
CEILING_FACES, CEILING_SEED = 64, 4321  # the faces the ceiling's subspace is fitted on: a pool of their own


def ceiling_subspace(generator: Generator, space: str, group: list[int], dim: int, like: Tensor) -> Tensor:
    """[D, dim]: the best fixed subspace of the world (linalg.best_fixed_subspace) over the local truths of
    CEILING_FACES faces drawn for it alone (``like``: their dtype and device). Never fitted on the faces it is
    scored on: fitted on the 8 held-out faces it is their in-sample optimum, which no answer fitted on other
    faces can match (in the curved tiers its coverage was higher in every case, docs/worlds.md)."""
    from ice_exp.generators.toyface.factors import true_subspace

    z = latent_pool(CEILING_SEED, CEILING_FACES, generator.z_dim).to(like)
    return best_fixed_subspace([true_subspace(generator.factor_jacobian(generator.encode(zi[None], space), space)[0], group)
                                for zi in z], dim)


def passes(metrics: dict[str, Any]) -> bool:
    """The ground-truth bars of the run's world: the true dimension, and in a linear world a largest
    principal angle < 10° and mean purity > 0.9; in a curved one purity and coverage each within 0.05 of
    the best fixed subspace's (no global subspace can be pure at every face, nor hold every local truth)."""
    if metrics["gt/dim_found"] != metrics["gt/dim_true"]:
        return False
    if metrics["gt/curvature"] == 0:
        return metrics["gt/principal_angle_max_deg"] < PASS_ANGLE_DEG and metrics["gt/purity_mean"] > PASS_PURITY
    return all(metrics[f"gt/{score}_mean"] >= metrics[f"ceiling/{score}_mean"] - CEILING_MARGIN
               for score in ("purity", "coverage"))


def ground_truth(generator: Generator, space: str, factors: list[str], solution: Solution, problem: Problem,
                 z_eval: Tensor) -> dict[str, Any]:
    """Scores against the true subspace of ``factors`` (generators that know their factors: toyface): the
    global angle to the truth at the mean face, and purity and coverage against each held-out face's local
    truth (exact from the factor Jacobian there), beside the ceiling's scores on those faces."""
    from ice_exp.generators.toyface.factors import factor_index, true_subspace

    truth = generator.true_subspace(factors, space)
    group = factor_index(factors)
    jacobians = [generator.factor_jacobian(generator.encode(z[None], space), space)[0]
                 for z in tqdm(z_eval, desc="ground truth: local truths", unit="face", disable=bar_disable(), leave=False)]
    local_truths = [true_subspace(j, group) for j in jacobians]
    out: dict[str, Any] = {"gt/dim_true": truth.shape[1], "gt/dim_found": solution.directions.shape[1],
                           "gt/curvature": float(getattr(generator, "curvature", 0.0))}
    scored = [("gt", solution.directions), ("ceiling", ceiling_subspace(generator, space, group, truth.shape[1], z_eval))]
    if problem.activate is not None:  # naive baseline: top principal directions of the activate term alone
        scored.append(("baseline/pca", torch.linalg.eigh(problem.activate.double())[1][:, -truth.shape[1]:]))
    for prefix, v in scored:
        purity, coverage = MeanPerDirection(v.shape[1]), MeanPerDirection(1)
        for jac, local in zip(jacobians, local_truths):
            purity.update(factor_purity(jac, group, v))
            coverage.update(local_coverage(jac, group, local, v)[None])
        angles = principal_angles(v, truth)
        out[f"{prefix}/principal_angle_max_deg"] = float(angles.max())
        out[f"{prefix}/purity_mean"] = float(purity.compute().mean()) if v.shape[1] else float("nan")
        out[f"{prefix}/coverage_mean"] = float(coverage.compute().mean())
    out["gt/principal_angles_deg"] = principal_angles(solution.directions, truth).tolist()
    out["gt/pass"] = int(passes(out))
    return out



def score(generator: Generator, terms: Terms, space: str, problem: Problem, solution: Solution, z_eval: Tensor,
          truth: list[str] | None, grams: SampleGrams | None = None, trust_terms: Terms | None = None) -> dict[str, Any]:
    """Every score of a discovery run: the solution's size, the training faces' agreement with it where the
    run accumulated their own solutions (``trust/agreement``, no ground truth needed), and on held-out samples
    gain, leakage, their activate share as the run's analyzers and (``trust_terms``) the independent trust
    analyzers read them, and (with a known truth) the ground-truth scores."""
    out: dict[str, Any] = {"solver/num_directions": solution.directions.shape[1], "solver/sigma": solution.sigma.tolist()}
    for view in problem.views.values():  # the consensus solver's mean projector (solvers.consensus)
        out["trust/agreement"] = agreement(view, solution.directions)
    if len(z_eval):
        out.update(evaluate(generator, terms, space, solution, z_eval, grams=grams))
        if trust_terms is not None:
            out.update(independent_trust(generator, trust_terms, space, solution, z_eval))
        if truth:
            out.update(ground_truth(generator, space, truth, solution, problem, z_eval))
    return out
