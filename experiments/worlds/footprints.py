"""Why a toyface run keeps or drops a factor: each factor's footprint on each term of the run.

``python -m experiments.worlds.footprints experiment=toyface/hair_photometry generator.seed=10 samples.seed=8``
(any ice-exp overrides). For every factor f, moved alone along its true direction d_f, it prints
dᵀ M d / λ_max(M) for the activate term and every suppress term (M = the run's mean JᵀJ over its
samples), and f's values at the samples. Early projection keeps a direction only where every suppress
footprint is below the term's ratio (marked ``!`` for a true-group factor that a term removes), and
finds a true factor only if its activate footprint clears rho·σ_max; a factor outside the group that no
term removes (``free``) tilts the directions when its read-out row shares components with the group's.
This table is how each failure class of the world protocol was diagnosed (docs/worlds.md).
"""
from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir

from ice_exp.config import CONF_DIR
from ice_exp.engine.accumulate import accumulate
from ice_exp.generators.toyface.factors import FACTORS
from ice_exp.run.build import build_setup
from ice_exp.solvers.base import Problem


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", "counterfactual.enabled=false", *overrides])
    task = build_setup(cfg)
    generator, z, truth = task.generator, task.z_train, task.truth or []
    problem = Problem.of(accumulate(task.sample_grams, z), task.terms, generator, task.space)
    grams = [("activate", problem.activate, None)] + [(t.name, t.gram, t.ratio) for t in problem.suppress]
    scale = [torch.linalg.eigvalsh(g)[-1] for _, g, _ in grams]
    values = generator.factors(generator.encode(z, "s"))
    print(f"{cfg.criteria.name}: world {cfg.generator.seed}, pool {cfg.samples.seed}, samples {list(cfg.samples.indices)}; "
          f"ratios " + ", ".join(f"{n} {r:g}" for n, _, r in grams[1:]))
    print(f"  {'factor':18s}" + "".join(f"{n[:13]:>14s}" for n, _, _ in grams) + "  note   values at the samples")
    for i, name in enumerate(FACTORS):
        d = generator.true_subspace([name], cfg.space)[:, 0].to(problem.activate)
        prints = [float(d @ g @ d / s) for (_, g, _), s in zip(grams, scale)]
        removed = any(p >= r for p, (_, _, r) in zip(prints[1:], grams[1:]))
        note = ("!" if removed else " ") if name in truth else ("     " if removed else "free ")
        print(f"{'*' if name in truth else ' '} {name:18s}" + "".join(f"{p:14.2e}" for p in prints)
              + f"  {note:5s}  " + " ".join(f"{v:+.2f}" for v in values[:, i].tolist()))


if __name__ == "__main__":
    main(sys.argv[1:])
