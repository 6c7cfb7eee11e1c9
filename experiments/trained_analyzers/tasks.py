"""The seven toyface tasks with trained analyzers instead of the oracles: ground truth side by side, and why
they differ.

``python -m experiments.trained_analyzers.tasks --worlds 10-12 --analyzers "analyzer/parser=bisenet
analyzer.parser.path=<parsing_bisenet.pth> analyzer.parser.size=256 analyzer/landmarker=fan
analyzer.landmarker.path=<fan.pth> analyzer.landmarker.size=128 analyzer.landmarker.num_modules=2"``

Each task runs with its recommended settings (``experiment=toyface/<task>``) in each world, four ways:
the oracle parser and landmarks; the trained networks with this project's glue; the trained networks with
the seed's glue (``heatmap_mode=seed``, ``mask_mode=seed``; face_color's soft colour mask is ours only, so
its seed-glue run uses the hard mask, ``soft=false``); the trained networks with the FAN's maps read near
their peaks only (``heatmap_mode=local``), which separates the decoding's share of the landmark error from
the network's. Each way accumulates its Grams exactly as a run does
and solves with the run's solver. Reported per task, as median [worst] over the worlds: the ground-truth
scores of each way (pass count, largest angle to the true subspace, purity, dimension), the largest
principal angle between the oracle's subspace and the trained one's and between the two glues, and per
term the largest angle between the eigenspaces the solver reads (activate: the top eigenvector; suppress:
λ ≥ ratio·λ_max), oracle vs trained, which names the term an analyzer error moved; per way and term, how
many true dimensions a suppress term blocks and how much of the activate term the truth holds
(``truth_on_terms``), and the factors the activate term's top direction and each found direction move.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor

from experiments.trained_analyzers import resumable
from experiments.trained_analyzers.resumable import Row, median_worst
from ice_exp.common.linalg import eigenspace_angle, principal_angles, significant_eigenspace
from ice_exp.config import CONF_DIR
from ice_exp.criteria.terms import ACTIVATE
from ice_exp.engine.accumulate import accumulate
from ice_exp.run.build import Setup, build_setup
from ice_exp.run.evaluation import ground_truth
from ice_exp.solvers.base import Problem, Solution

SEED_GLUE = ["analyzer.landmarker.heatmap_mode=seed", "analyzer.parser.mask_mode=seed"]
LOCAL = ["analyzer.landmarker.heatmap_mode=local"]
WAYS = ("oracle", "trained", "trained_seed_glue", "trained_local")


def solve(overrides: list[str]) -> tuple[Setup, dict[str, Tensor], Solution, dict[str, Any]]:
    """Build, accumulate and solve one run; its ground-truth scores."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "counterfactual.enabled=false", "samples.eval_num=2",
                                           *overrides])
    setup = build_setup(cfg)
    grams = accumulate(setup.sample_grams, setup.z_train)
    problem = Problem.of(grams, setup.terms, setup.generator, setup.space)
    solution = instantiate(cfg.solver)(problem)
    scores = ground_truth(setup.generator, setup.space, setup.truth, solution, problem, setup.z_eval)
    return setup, grams, solution, scores


def term_angles(setup: Setup, oracle: dict[str, Tensor], trained: dict[str, Tensor]) -> dict[str, float]:
    """Per term, the largest angle (deg) between what the solver reads of the oracle's and the trained Gram."""
    out = {}
    for term in setup.terms.terms:
        if term.ratio is None:
            top = [torch.linalg.eigh(g[term.name].double())[1][:, -1:] for g in (oracle, trained)]
            out[term.name] = float(principal_angles(*top).max())
        else:
            out[term.name] = eigenspace_angle(trained[term.name], oracle[term.name], term.ratio)[0]
    return out


def truth_on_terms(setup: Setup, grams: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """Per term, how its Gram G sees the true subspace Q (orthonormal): the eigenvalues of QᵀGQ over λ_max(G).
    A suppress term blocks the true dimensions whose share is ≥ its ratio (``blocked``, of ``dim``); an
    activate term finds the truth when its strongest and weakest true shares (``share_max``, ``share_min``)
    stay large. ``significant``: the term's dimension at its ratio (suppress terms)."""
    q = setup.generator.true_subspace(setup.truth, setup.space).double()
    out = {}
    for term in setup.terms.terms:
        g = grams[term.name].double()
        share = torch.linalg.eigvalsh(q.T @ g @ q) / torch.linalg.eigvalsh(g)[-1]
        row = {"share_max": float(share[-1]), "share_min": float(share[0]), "dim": q.shape[1]}
        if term.ratio is not None:
            row["blocked"] = int((share >= term.ratio).sum())
            row["significant"] = significant_eigenspace(g, term.ratio).shape[1]
        out[term.name] = row
    return out


def factor_mix(setup: Setup, directions: Tensor, top: int = 3) -> list[list[list[Any]]]:
    """Per direction, the factors it moves most: share of ‖J_factors v‖² over the held-out samples (what
    purity reads), the ``top`` largest. Names what an analyzer error made a term or the solver prefer."""
    generator = setup.generator
    jac = generator.factor_jacobian(generator.encode(setup.z_eval, setup.space), setup.space).double()  # [B, F, D]
    moved = (jac @ directions.double().to(jac.device)).square().sum(0)  # [F, K]
    share = moved / moved.sum(0).clamp_min(1e-30)
    names = generator.factor_names()
    return [[[names[int(i)], round(float(share[i, k]), 4)] for i in share[:, k].argsort(descending=True)[:top]]
            for k in range(directions.shape[1])]


def largest_angle(a: Tensor, b: Tensor) -> float:
    """Largest principal angle (deg) between two found subspaces; 90 when either is empty."""
    return float(principal_angles(a, b).max()) if a.shape[1] and b.shape[1] else 90.0


def one_world(task: str, world: int, analyzers: list[str], overrides: list[str]) -> Row:
    base = [f"experiment=toyface/{task}", f"generator.seed={world}", *overrides]
    hard = ["criteria.activate.criterion.soft=false", "criteria.suppress.residual.criterion.soft=false"]
    seed_glue = SEED_GLUE + (hard if task == "face_color" else [])
    runs = {"oracle": solve(base), "trained": solve(base + analyzers),
            "trained_seed_glue": solve(base + analyzers + seed_glue), "trained_local": solve(base + analyzers + LOCAL)}
    row: Row = {}
    for way, (_, _, _, scores) in runs.items():
        row.update({f"{way}/{k}": scores[k] for k in ("gt/pass", "gt/principal_angle_max_deg", "gt/purity_mean", "gt/dim_found")})
    row["gt/dim_true"] = runs["oracle"][3]["gt/dim_true"]
    d = {way: r[2].directions for way, r in runs.items()}
    row["angle_oracle_trained_deg"] = largest_angle(d["oracle"], d["trained"])
    row["angle_glues_deg"] = largest_angle(d["trained"], d["trained_seed_glue"])
    row["term_angle_deg"] = term_angles(runs["oracle"][0], runs["oracle"][1], runs["trained"][1])
    row["truth_on_terms"] = {way: truth_on_terms(setup, grams) for way, (setup, grams, _, _) in runs.items()}
    row["activate_top_factors"] = {way: factor_mix(setup, torch.linalg.eigh(grams[ACTIVATE].double())[1][:, -1:])[0]
                                   for way, (setup, grams, _, _) in runs.items()}
    row["found_factors"] = {way: factor_mix(setup, solution.directions) for way, (setup, _, solution, _) in runs.items()}
    return row


def by_task(rows: list[Row]) -> dict[str, list[Row]]:
    return {task: [r for r in rows if r["task"] == task] for task in dict.fromkeys(r["task"] for r in rows)}


def purity_cell(purities: list[float]) -> str:
    """median [worst] over the worlds that found a direction (a world that found none has no purity)."""
    found = [p for p in purities if not math.isnan(p)]
    if not found:
        return "–"
    return median_worst(found, min) + (f" ({len(found)}/{len(purities)} found any)" if len(found) < len(purities) else "")


def table(rows: list[Row]) -> str:
    """Markdown, median [worst] over the worlds: the ground truth of each way, then why they differ."""
    lines = ["| task | dims true | " + " | ".join(f"{way}: pass · angle to truth · purity · dims" for way in WAYS)
             + " | subspace angle oracle vs trained | trained: our glue vs the seed's |", "|---" * (4 + len(WAYS)) + "|"]
    for task, mine in by_task(rows).items():
        cells = [f"{sum(int(r[f'{way}/gt/pass']) for r in mine)}/{len(mine)} · "
                 f"{median_worst([r[f'{way}/gt/principal_angle_max_deg'] for r in mine])}° · "
                 f"{purity_cell([r[f'{way}/gt/purity_mean'] for r in mine])} · "
                 + "/".join(str(d) for d in sorted({int(r[f'{way}/gt/dim_found']) for r in mine})) for way in WAYS]
        lines.append(f"| {task} | {mine[0]['gt/dim_true']} | " + " | ".join(cells)
                     + f" | {median_worst([r['angle_oracle_trained_deg'] for r in mine])}°"
                     + f" | {median_worst([r['angle_glues_deg'] for r in mine])}° |")
    return "\n".join(lines) + "\n\n" + why_table(rows)


def why_table(rows: list[Row]) -> str:
    """Per task and way (oracle → trained → seed glue → local), medians over the worlds: the factor the activate
    term's top direction moves most (and in how many worlds), the truth's largest share of the activate
    term's λ_max, and per suppress term the truth's largest share of its λ_max and the true dimensions that
    share blocks (those at or above the term's ratio)."""
    lines = ["| task | activate's top direction moves | activate: truth's share of λ_max "
             "| suppress terms: truth's share of λ_max · true dims blocked |", "|---|---|---|---|"]
    for task, mine in by_task(rows).items():
        tops = []
        for way in WAYS:
            leaders = [r["activate_top_factors"][way][0] for r in mine]
            name = Counter(f for f, _ in leaders).most_common(1)[0][0]  # ties: the first world's
            share = statistics.median(s for f, s in leaders if f == name)
            tops.append(f"{name} {share:.2f} ({sum(f == name for f, _ in leaders)}/{len(mine)})")
        terms = mine[0]["truth_on_terms"]["oracle"]
        def median(term: str, key: str) -> list[float]:
            return [statistics.median(r["truth_on_terms"][way][term][key] for r in mine) for way in WAYS]
        activate = "→".join(f"{v:.2g}" for v in median(ACTIVATE, "share_max"))
        suppress = [f"{t}: " + "→".join(f"{v:.1g}" for v in median(t, "share_max")) + " · "
                    + "→".join(f"{v:g}" for v in median(t, "blocked")) for t in terms if t != ACTIVATE]
        lines.append(f"| {task} | {' → '.join(tops)} | {activate} | {'<br>'.join(suppress)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[Row]:
    args = resumable.parser(__doc__.split("\n")[0]).parse_args(argv)
    return resumable.run_rows(args, one_world, table, complete=lambda row: all(f"{way}/gt/pass" in row for way in WAYS))


if __name__ == "__main__":
    main()
