"""The counterfactual claim over worlds: in each toyface world a classifier of its own (``classifier=toyface_attr``
trained on that world's renderer), the seven subspaces that world's recommended experiments discover, and
faces the truth can judge (the classifier right with confidence, each rule factor alone able to flip the
rule: world.attribute.flippable). The subspaces whose true groups hold a rule factor should flip the
decision and the others should not; each world's flip rates are one row, and the table gives the median and
the worst world of the rule subspaces' mean and minimum and of the other subspaces' maximum, for the
discovered subspaces and, beside them, the true ones.

``OMP_NUM_THREADS=1 python -m experiments.counterfactual.worlds --worlds 95-99 --out rows.jsonl``

The search is the bounded one of tests/test_counterfactual.py (12 SGD steps towards the other class, ‖Bλ‖ ≤ 6,
stopping at p ≥ 0.9), so that a flip means the subspace moved the rule, not that it pushed every factor to
saturation (the seed's unbounded search flips in every subspace: docs/counterfactual.md).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ice_exp.config import CONF_DIR
from ice_exp.config.task import true_groups
from ice_exp.counterfactual.in_subspaces import explain
from ice_exp.engine.accumulate import accumulate
from ice_exp.run.build import build_setup
from ice_exp.solvers.base import Problem, Solution
from ice_exp.world.attribute import AttrRule, flippable

SEARCH = ["counterfactual.iterations=12", "counterfactual.target_class=flip", "counterfactual.norm_bound=6",
          "counterfactual.stop_probability=0.9"]
CONFIDENT = 0.8  # the classifier's probability of its (correct) answer on a face that is explained
FACES = 16


def composed(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=["logger=none", *overrides])


def discovered(task: str, world: int):
    """The recommended experiment of ``task`` in ``world``: its solution, terms and task (no evaluation)."""
    cfg = composed("config", [f"experiment=toyface/{task}", f"generator.seed={world}", "counterfactual.enabled=false",
                              "samples.eval_num=0"])
    setup = build_setup(cfg)
    problem = Problem.of(accumulate(setup.sample_grams, setup.z_train), setup.terms, setup.generator, setup.space)
    return instantiate(cfg.solver)(problem), setup, OmegaConf.to_container(cfg.criteria.task)


def judged_faces(generator, classifier, rule: AttrRule, count: int, seed: int) -> torch.Tensor:
    z = torch.randn(40 * count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        s = generator.encode(z, "s")
        factors = generator.factors(s)
        p = classifier(generator.decode(s, "s").image)[:, 0].softmax(-1)
    keep = torch.nonzero((p.argmax(1) == rule.label(factors)) & (p.amax(1) >= CONFIDENT) & flippable(factors, rule))
    return z[keep.flatten()[:count]]


def world_row(world: int, faces: int, classifier_overrides: list[str] = ()) -> dict:
    explain_cfg = composed("explain", [f"classifier.generator_seed={world}", *SEARCH, *classifier_overrides])
    classifier = instantiate(explain_cfg.classifier, _convert_="all")
    rule = AttrRule(classifier.info["rule"], classifier.info["threshold"])
    rule_tasks = {t for t, group in true_groups().items() if set(group) & set(rule.weights)}
    runs = {task: discovered(task, world) for task in true_groups()}
    setup = next(iter(runs.values()))[1]
    generator, analyzers = setup.generator, setup.analyzers
    z = judged_faces(generator, classifier, rule, faces, seed=world)
    if len(z) == 0:
        raise RuntimeError(f"world {world}: among {40 * faces} faces none is both flippable by each rule factor alone and "
                           f"classified right with p >= {CONFIDENT} (held-out accuracy {classifier.info['held_out_accuracy']:.3f})")
    terms = {task: run[1].terms for task, run in runs.items()}
    tasks = {task: run[2] for task, run in runs.items()}
    row = {"world": world, "faces": len(z), "held_out_accuracy": classifier.info["held_out_accuracy"],
           "rule_subspaces": sorted(rule_tasks)}
    found = {task: (run[0], {"space": run[1].space}) for task, run in runs.items() if len(run[0].sigma)}
    true = {task: (Solution(torch.ones(len(group)), generator.true_subspace(group, setup.space)), {"space": setup.space})
            for task, group in true_groups().items()}
    for kind, subspaces in (("discovered", found), ("true", true)):
        with tempfile.TemporaryDirectory() as out:
            rows = explain(explain_cfg.counterfactual, classifier, subspaces, generator, analyzers, terms, tasks, Path(out), z=z)
        flip = {r["subspace"]: r["flip_rate"] for r in rows}
        rule_rates = [flip.get(t, 0.0) for t in rule_tasks]  # a subspace not found flips nothing
        row[kind] = {"flip_rate": flip, "rule_mean": sum(rule_rates) / len(rule_rates), "rule_min": min(rule_rates),
                     "others_max": max((v for t, v in flip.items() if t not in rule_tasks), default=0.0)}
    return row


def summary(rows: list[dict]) -> str:
    lines = ["| subspaces | rule subspaces' mean flip rate | their minimum | other subspaces' maximum |",
             "|---|---|---|---|"]
    for kind in ("discovered", "true"):
        cells = []
        for key, worst in (("rule_mean", min), ("rule_min", min), ("others_max", max)):
            values = [r[kind][key] for r in rows]
            cells.append(f"{statistics.median(values):.2f} [worst {worst(values):.2f}]")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{len(rows)} worlds ({', '.join(str(r['world']) for r in rows)}), median [worst world]"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="95-99", help="first-last generator.seed")
    p.add_argument("--faces", type=int, default=FACES, help="judged faces per world")
    p.add_argument("--classifier", default="", help="overrides of the classifier (e.g. a smaller training set, a cache_dir)")
    p.add_argument("--out", type=Path, default=Path("counterfactual_worlds.jsonl"), help="one JSON row per world (appended)")
    args = p.parse_args(argv)
    first, last = (int(x) for x in args.worlds.split("-"))
    rows = []
    for world in range(first, last + 1):
        row = world_row(world, args.faces, shlex.split(args.classifier))
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"world {world}: {row['faces']} faces, accuracy {row['held_out_accuracy']:.3f}; " + "; ".join(
            f"{kind}: " + ", ".join(f"{t} {v:.2f}" for t, v in row[kind]["flip_rate"].items()) for kind in ("discovered", "true")),
            flush=True)
    print(summary(rows))


if __name__ == "__main__":
    main()
