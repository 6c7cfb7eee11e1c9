"""Which term keeps the truth out, per task and world of a linear tier: the true subspace Q's share of each
term's λ_max on the 16 training faces' summed Grams (experiments.trained_analyzers.tasks.truth_on_terms), and the
true dimensions each suppress term blocks at its ratio.

``OMP_NUM_THREADS=1 python -m experiments.worlds.blocking --worlds 80-81 --trained [--crosscheck] [--overrides "..."]``: the
Grams are those the tiers computed (the same cache), so after a tier has run this costs seconds a case.
"""
from __future__ import annotations

import argparse
import shlex

from experiments.trained_analyzers.tasks import truth_on_terms
from experiments.worlds.tiers import CROSSCHECK_RECIPE, TASKS, composed, face_grams, trained_overrides
from ice_exp.run.build import build_setup


def blocking(task: str, world: int, overrides: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """truth_on_terms on the summed Grams of the task's consensus faces in that linear world."""
    setup = build_setup(composed(task, world, 0.0, overrides))
    faces = face_grams(setup)
    return truth_on_terms(setup, {name: sum(g[name] for g in faces) for name in faces[0]})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="80-81", help="first-last generator.seed")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--trained", action="store_true", help="the trained BiSeNet + FAN of conf/analyzer_net (cached)")
    p.add_argument("--crosscheck", action="store_true", help="with --trained: the second BiSeNet + FAN as cross-check analyzers")
    p.add_argument("--overrides", default="", help="further run overrides")
    args = p.parse_args(argv)
    overrides = shlex.split(args.overrides)
    if args.trained:
        overrides = [*trained_overrides(), *overrides]
    if args.crosscheck:
        overrides = [*trained_overrides(CROSSCHECK_RECIPE, CROSSCHECK_RECIPE, into="crosscheck"), *overrides]
    first, last = (int(x) for x in args.worlds.split("-"))
    print("| task | world | activate: truth's share of λ_max (min–max) | suppress: share max · true dims blocked at the ratio |")
    print("|---|---|---|---|")
    for task in args.tasks.split(","):
        for world in range(first, last + 1):
            terms = blocking(task, world, tuple(overrides))
            act = terms.pop("activate")
            print(f"| {task} | {world} | {act['share_min']:.2g}–{act['share_max']:.2g} | "
                  + "<br>".join(f"{n}: {t['share_max']:.2g} · {t['blocked']}/{t['dim']}" for n, t in terms.items()) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
