"""The toyface tiers on worlds × curvatures, solved from one accumulation per (task, world, curvature): the
recommended settings (their 4 faces, z #0-#3), ICE by consensus (16 faces) and the peers on the same 16
faces (ReSeFa, LowRankGAN, SeFa, GANSpace: conf/solver/<name>.yaml; each cut to the task's true dimension,
the fair count for solvers that return a fixed number, as ice-compare does), each scored
by evaluation.ground_truth on 8 held-out faces, as a run scores itself (gt/pass is the world's bar), and by
the trust scores without ground truth (trust/agreement: how much of each answer the 16 faces' own ICE
solutions hold; trust/heldout_share: the activate share of its held-out change as the run's analyzers read
it; with ``--trust``, trust/independent_share: the same read by the second trained BiSeNet + FAN, or with
``--trust local`` by the run's own FAN decoded near each peak), each with its
rank correlation to the true purity over all cases and methods.

``OMP_NUM_THREADS=1 python -m experiments.worlds.tiers --worlds 60-61 --curvatures 0,0.3,1 --out tiers.jsonl``
(``--methods recommended,consensus`` for some of the columns only). ``--trained``: the trained-analyzer tiers,
the BiSeNet and FAN of conf/analyzer_net (trained on first use, 44 min side by side on the 2 cores, then read from the
cache as ``make trained-analyzers`` leaves it) loaded as a user loads them; ``--overrides "<run overrides>"``
for any other analyzers or settings. ``--floors 1-2``: every suppress ratio raised to its noise floor, the
analyzers' own error measured against the oracles on those (validation) worlds' held-out faces
(ice_exp.run.noise_floor), once per task before any case.

The same numbers as ``ice-exp -cn tiers -m`` runs for these columns, at a fraction of the cost: the 16 faces'
Grams are computed once (engine.cache_dir, $ICE_EXP_CACHE) and every solver reads them. Prints one line per
case and a pass-rate table per tier and method; writes one JSON row per case to --out.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from experiments.trained_analyzers.reproduce import loading_overrides, train_both
from ice_exp.config import CONF_DIR
from ice_exp.criteria.terms import Terms
from ice_exp.metrics.directional import agreement
from ice_exp.run.build import Setup, build_setup, compose_solver
from ice_exp.run.evaluation import evaluate, ground_truth
from ice_exp.run.noise_floor import floored_ratios, noise_floors
from ice_exp.solvers.base import VIEW, Problem, Solution, Solver, views_of
from ice_exp.solvers.consensus import Consensus
from ice_exp.solvers.ice import EarlyProjection

TASKS = ("face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape")
RECOMMENDED_FACES = 4  # the recommended experiments' samples.indices [0, 1, 2, 3]
PEERS = ("resefa", "lowrankgan", "sefa", "ganspace")  # conf/solver names, their defaults
METHODS = ("recommended", "consensus", *PEERS)


def composed(task: str, world: int, curvature: float, overrides: tuple[str, ...] = ()) -> DictConfig:
    """The tiers config of one case: the task's consensus experiment in that world and tier."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("tiers", overrides=[f"experiment=toyface/consensus/{task}", f"generator.seed={world}",
                                           f"generator.curvature={curvature}", *overrides])


def trained_overrides(bisenet: str = "", fan: str = "", into: str = "analyzer") -> list[str]:
    """The run overrides that load the trained BiSeNet and FAN of conf/analyzer_net (with those recipe overrides),
    trained on first use and read from the cache after, as the run's analyzers or (``into="crosscheck"``) its
    cross-check ones."""
    return shlex.split(loading_overrides(*train_both({"bisenet": shlex.split(bisenet), "fan": shlex.split(fan)}), into))


CROSSCHECK_RECIPE = "seed=1 data.first_world=300"  # the second pair: other initial weights, other training worlds


TRUST_ANALYZERS = ("second", "local")  # --trust: the second trained pair, or the run's FAN with another decoder


def trust_overrides(kind: str, bisenet: str = "", fan: str = "") -> list[str]:
    """The trust analyzers of ``--trust``: the second BiSeNet + FAN trained apart, or (``local``) the run's own
    trained FAN (``bisenet``, ``fan``: the pair's recipe overrides) read near each heatmap peak: its whole-map
    soft-argmax moves the points with the face's colours, which the discovery fitted; local decoding does not."""
    if kind == "second":
        return trained_overrides(CROSSCHECK_RECIPE, CROSSCHECK_RECIPE, into="trust")
    own = [o for o in trained_overrides(bisenet, fan, into="trust") if "landmarker" in o.split("=")[0]]
    return [*own, "trust.landmarker.heatmap_mode=local"]


def face_grams(setup: Setup) -> list[dict[str, Tensor]]:
    """Each training face's Grams (read from the Gram cache where a tier computed them before)."""
    return [setup.sample_grams(z, setup.generator.encode(z[None], setup.space)[0]) for z in setup.z_train]


def floor_overrides(task: str, worlds: range, overrides: tuple[str, ...]) -> tuple[str, ...]:
    """``criteria.suppress.<term>.ratio=...`` raising each ratio of ``task`` to its noise floor with the
    analyzers of ``overrides``: the largest over the validation ``worlds`` (linear), each measured on their
    held-out faces against the oracle analyzers (ice_exp.run.noise_floor); ``~criteria.suppress.<term>`` for a
    term that is all error."""
    floors: dict[str, float] = {}
    exact_overrides = ("analyzer", "crosscheck", "trust")  # dropped: the same run with the exact analyzers
    oracles = tuple(o for o in overrides if not o.lstrip("+~").startswith(exact_overrides))
    for world in worlds:
        measured, exact = build_setup(composed(task, world, 0.0, overrides)), build_setup(composed(task, world, 0.0, oracles))
        for name, f in noise_floors(measured, exact, measured.z_eval).items():
            floors[name] = max(f, floors.get(name, 0.0))
    ratios = floored_ratios({t.name: t.ratio for t in measured.terms.suppress}, floors)
    print(f"{task}: noise floors {', '.join(f'{n} {f:.2g}' for n, f in floors.items())}", flush=True)
    return tuple(f"~criteria.suppress.{name}" if r is None else f"criteria.suppress.{name}.ratio={r!r}"
                 for name, r in ratios.items())


def case(task: str, world: int, curvature: float, methods: tuple[str, ...] = METHODS,
         overrides: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    cfg = composed(task, world, curvature, overrides)
    setup = build_setup(cfg)
    faces = face_grams(setup)

    def problem(grams: list[dict]) -> Problem:
        mean = {name: sum(g[name] for g in grams) / len(grams) for name in grams[0]}
        return Problem.of(mean, setup.terms, setup.generator, setup.space)

    consensus: Solver = Consensus()
    everything = problem(faces)
    (name, view), = views_of([consensus], setup.terms, setup.generator, setup.space).items()  # as the accumulation does
    everything.views[name.removeprefix(VIEW)] = sum(view(g) for g in faces) / len(faces)
    truth = list(cfg.criteria.task.truth)
    solvers = {"recommended": lambda: EarlyProjection(rho=1e-4, intersection_tol=1e-2)(problem(faces[:RECOMMENDED_FACES])),
               "consensus": lambda: consensus(everything),
               **{name: lambda name=name: instantiate(compose_solver(name, []))(everything).first(len(truth)) for name in PEERS}}
    solutions = {name: solvers[name]() for name in methods}
    keys = ("gt/pass", "gt/dim_found", "gt/dim_true", "gt/purity_mean", "gt/coverage_mean", "ceiling/purity_mean",
            "ceiling/coverage_mean", "gt/principal_angle_max_deg")
    scores = {name: ground_truth(setup.generator, setup.space, truth, s, Problem(), setup.z_eval) for name, s in solutions.items()}
    shares = {key: held_out_shares(setup, terms, solutions) for key, terms in
              (("trust/heldout_share", setup.terms), ("trust/independent_share", setup.trust_terms)) if terms is not None}
    return {name: {**{k: scores[name][k] for k in keys},
                   "trust/agreement": agreement(everything.views[consensus.view_key], s.directions),
                   **{key: share[name] for key, share in shares.items()}}
            for name, s in solutions.items()}


def held_out_shares(setup: Setup, terms: Terms, solutions: dict[str, Solution]) -> dict[str, float]:
    """Each answer's trust/heldout_share as ``terms`` read it on the held-out faces (run.evaluation.evaluate),
    every answer's directions probed in the same passes."""
    together = Solution(torch.cat([s.sigma for s in solutions.values()]), torch.cat([s.directions for s in solutions.values()], 1))
    share = torch.tensor(evaluate(setup.generator, terms, setup.space, together, setup.z_eval)["trust/heldout_share_per_direction"])
    parts = share.split([s.directions.shape[1] for s in solutions.values()])
    return {name: float(part.mean()) if len(part) else float("nan") for name, part in zip(solutions, parts)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="60-61", help="first-last generator.seed")
    p.add_argument("--curvatures", default="0,0.3,1", help="comma-separated generator.curvature values (the tiers)")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated columns (default: all: {','.join(METHODS)})")
    p.add_argument("--overrides", default="", help="further run overrides for every case (another tier's analyzers)")
    p.add_argument("--trained", action="store_true", help="load the trained BiSeNet + FAN (trained once, then cached)")
    p.add_argument("--bisenet", default="", help="with --trained: overrides of conf/train_analyzer.yaml for the BiSeNet")
    p.add_argument("--fan", default="", help="with --trained: overrides of conf/train_analyzer.yaml for the FAN")
    p.add_argument("--crosscheck", action="store_true", help="with --trained: a second BiSeNet + FAN trained apart "
                   f"({CROSSCHECK_RECIPE}) as the cross-check analyzers (criteria.terms)")
    p.add_argument("--trust", nargs="?", const="second", choices=TRUST_ANALYZERS, help="every answer's "
                   f"trust/independent_share on the held-out faces, read by: second (default) the second BiSeNet + FAN "
                   f"({CROSSCHECK_RECIPE}); local: the trained FAN of --trained decoded near each peak "
                   "(heatmap_mode=local), the run's parser")
    p.add_argument("--floors", default=None, help="first-last validation worlds: raise every suppress ratio to its "
                   "noise floor measured there against the oracles (ice_exp.run.noise_floor)")
    p.add_argument("--out", type=Path, default=Path("tiers.jsonl"), help="one JSON row per case (appended)")
    args = p.parse_args(argv)
    if unknown := set(args.methods.split(",")) - set(METHODS):
        p.error(f"--methods: unknown {', '.join(sorted(unknown))}; allowed: {', '.join(METHODS)}")
    first, last = (int(x) for x in args.worlds.split("-"))
    overrides = shlex.split(args.overrides)
    if args.trained:
        overrides = [*trained_overrides(args.bisenet, args.fan), *overrides]
    if args.crosscheck:
        overrides = [*overrides, *trained_overrides(CROSSCHECK_RECIPE, CROSSCHECK_RECIPE, into="crosscheck")]
    if args.trust:
        overrides = [*overrides, *trust_overrides(args.trust, args.bisenet, args.fan)]
    floors = {}
    if args.floors:
        first_v, last_v = (int(x) for x in args.floors.split("-"))
        floors = {task: floor_overrides(task, range(first_v, last_v + 1), tuple(overrides)) for task in args.tasks.split(",")}
    rows = []
    for curvature in (float(c) for c in args.curvatures.split(",")):
        for world in range(first, last + 1):
            for task in args.tasks.split(","):
                run_overrides = (*overrides, *floors.get(task, ()))
                scores = case(task, world, curvature, tuple(args.methods.split(",")), run_overrides)
                ceiling = next(iter(scores.values()))  # the same for every method
                row = {"task": task, "world": world, "curvature": curvature, "overrides": shlex.join(run_overrides), "scores": scores}
                rows.append(row)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"curvature {curvature:g} world {world} {task}: " + "; ".join(
                    f"{name} {int(s['gt/dim_found'])}/{int(s['gt/dim_true'])} purity {s['gt/purity_mean']:.3f} "
                    f"coverage {s['gt/coverage_mean']:.3f} pass {s['gt/pass']}" for name, s in scores.items())
                    + f" (ceiling {ceiling['ceiling/purity_mean']:.3f}/{ceiling['ceiling/coverage_mean']:.3f})",
                    flush=True)
    print(summary(rows))


TRUST = ("trust/agreement", "trust/heldout_share", "trust/independent_share")  # the trust scores a row may hold


def rank_correlation(rows: list[dict], trust: str = "trust/agreement") -> float:
    """Spearman's ρ between the ``trust`` score and gt/purity_mean over every (case, method) with a direction
    and that score (NaN with fewer than three)."""
    import scipy.stats

    pairs = [(s[trust], s["gt/purity_mean"]) for r in rows for s in r["scores"].values() if s["gt/dim_found"] and trust in s]
    return float(scipy.stats.spearmanr(*zip(*pairs)).statistic) if len(pairs) > 2 else float("nan")


def summary(rows: list[dict]) -> str:
    """Pass count per tier (curvature) and method, and each trust score's rank correlation with purity."""
    methods = list(rows[0]["scores"]) if rows else []
    tiers = sorted({r["curvature"] for r in rows})
    lines = ["| tier | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in tiers:
        cases = [r for r in rows if r["curvature"] == t]
        lines.append(f"| curvature {t:g} | " + " | ".join(
            f"{sum(r['scores'][m]['gt/pass'] for r in cases)}/{len(cases)}" for m in methods) + " |")
    held = [t for t in TRUST if any(t in s for r in rows for s in r["scores"].values())]
    return "\n".join(lines) + "\n\n" + "\n".join(f"{t} vs gt/purity_mean: Spearman {rank_correlation(rows, t):.3f}" for t in held)


if __name__ == "__main__":
    main()
