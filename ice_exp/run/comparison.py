"""Every solver on the same task, scored alike, in one table (the app: ``ice-compare``, ice_exp/apps/compare.py).

The Grams are accumulated once over the training samples by the discovery run's accumulation (engine
options, Gram cache, trainer and DDP as there); every solver of ``compare.solvers`` (conf/solver/<name>.yaml,
composed by Hydra, so ``solver.<key>=`` overrides apply to each solver that has the key) and a random
baseline (as many random unit directions as ICE's early projection found, at least one) then solve the same
Problem and are scored on the held-out samples:
- ``eval/gain``, ``eval/leak/<term>``: change per unit step relative to random directions (ice_exp.run.evaluation);
- ``gt/*`` (toyface): largest principal angle to the true subspace, mean purity, dimensions;
- at each step t = step·viz.magnitude, averaged over directions and samples (ice_exp.metrics.edit):
  ``change/<term>@t`` (‖Δc‖²), ``locality@t`` (share of the pixel change inside the target region),
  ``split@t`` (target / other landmark motion), ``identity@t`` and ``fva@t`` (with an identity model).
Writes compare.md, compare.csv and compare.json (with per-direction values) to the run directory.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm.auto import tqdm

from ice_exp.analyzers import Analyzers
from ice_exp.common.face_parts import landmark_group
from ice_exp.common.files import write_json
from ice_exp.common.progress import bar_disable
from ice_exp.common.tables import markdown, write_csv
from ice_exp.counterfactual.measures import region_mask
from ice_exp.criteria.terms import Terms
from ice_exp.engine.accumulate import accumulate
from ice_exp.generators.base import Generator
from ice_exp.metrics.edit import IdentityCosine, LandmarkSplit, PixelLocality, TermChange
from ice_exp.run.artifacts import config_hash, environment
from ice_exp.run.build import Setup, accumulation_trainer, build_setup, compose_solver, is_rank_zero
from ice_exp.run.evaluation import evaluate, ground_truth, independent_trust, random_directions
from ice_exp.run.records import COMPLETED, RunStatus, claim, start_record
from ice_exp.run.tracking import make_logger, tracked
from ice_exp.solvers.base import Problem, Solution, Solver, views_of
from ice_exp.solvers.ice import EarlyProjection

log = logging.getLogger(__name__)

# which value of each edit metric the table reports, under which name (term changes: change/<term>)
REPORTED: dict[str, dict[str, str]] = {"locality": {"ratio": "locality"}, "split": {"split": "split"},
                                       "identity": {"cosine": "identity", "fva": "fva"}}


def edit_scores(generator: Generator, terms: Terms, analyzers: Analyzers, space: str, directions: Tensor,
                z_eval: Tensor, steps: list[float], region: dict[str, Any], group: list[int] | None
                ) -> dict[str, list[float]]:
    """{'<metric>@<step>': value per direction} of the edits u -> u + step·v over the samples z_eval;
    ``region`` is the task (conf/task) whose region the locality metric reads."""
    split = bool(group) and analyzers.landmarker is not None
    meters: dict[tuple[int, float], dict[str, Any]] = {}
    for k in range(directions.shape[1]):
        for step in steps:
            meters[k, step] = {f"change/{t.name}": TermChange() for t in terms.terms}
            if analyzers.parser is not None:
                meters[k, step]["locality"] = PixelLocality()
            if split:
                meters[k, step]["split"] = LandmarkSplit(group)
            if analyzers.identity is not None:
                meters[k, step]["identity"] = IdentityCosine()
    with torch.no_grad():
        for z in tqdm(z_eval, desc="edit scores (held-out faces)", unit="face", disable=bar_disable(), leave=False):
            u = generator.encode(z[None], space)
            frame = generator.decode(u, space)
            states = {key: c.prepare(frame) for key, c in terms.criteria.items()}
            outputs = lambda f: {key: terms.outputs(key, f, states[key]) for key in terms.criteria}  # noqa: E731
            before = outputs(frame)
            mask = region_mask(region, analyzers.parser, frame)
            points = analyzers.landmarker(frame) if split else None
            identity = analyzers.identity(frame) if analyzers.identity is not None else None
            for (k, step), m in meters.items():
                edited = generator.decode(u + step * directions[:, k].to(u), space)
                after = outputs(edited)
                for t in terms.terms:
                    m[f"change/{t.name}"].update(before[t.criterion][t.part], after[t.criterion][t.part])
                if mask is not None:
                    m["locality"].update(frame.image, edited.image, mask)
                if points is not None:
                    m["split"].update(points, analyzers.landmarker(edited))
                if identity is not None:
                    m["identity"].update(identity, analyzers.identity(edited))
    out: dict[str, list[float]] = {}
    for (k, step), m in meters.items():
        for key, meter in m.items():
            values = meter.compute()
            labels = REPORTED.get(key, {"change": key})
            for name, value in ((label, values[v]) for v, label in labels.items()):
                out.setdefault(f"{name}@{step:g}", [float("nan")] * directions.shape[1])[k] = value
    return out


def locality_target(cfg: DictConfig) -> tuple[dict[str, Any], list[int] | None]:
    """The task's region (conf/task: regions, dilation) for the locality metric and the landmark indices
    it moves, for the split metric (None: it moves none)."""
    task = OmegaConf.to_container(cfg.criteria.task, resolve=True)
    return task, (list(landmark_group(task["moves"])) if task["moves"] else None)


def compare(cfg: DictConfig, out_dir: Path | None = None, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Build the task, solve it with every solver, score each, write the table to ``out_dir``; returns one row
    per solver (none on DDP ranks above 0). ``overrides`` are the command line's (its ``solver.<key>=`` ones
    reach every solver). The folder's records are a discovery run's (config_resolved.yaml, run_info.json with
    its status: ``running``, ``failed:<stage>`` or ``completed``); the W&B run (job type ``compare``) starts
    before the build and ends after the table, as failed when a stage raises or SIGTERM stops the comparison."""
    status = RunStatus(out_dir if is_rank_zero() else None)
    if status.out_dir is not None:
        claim(status.out_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    logger = make_logger(cfg.logger, out_dir, f"compare-{cfg.name}", [f"criteria:{cfg.criteria.name}", f"space:{cfg.space}"],
                         resolved, job_type="compare") if status.out_dir is not None else None
    with tracked(logger):
        with status.stage("build"):
            task = build_setup(cfg)
            solvers = {name: instantiate(compose_solver(name, overrides or [])) for name in cfg.compare.solvers}
            if status.out_dir is not None:
                start_record(status.out_dir, cfg, config_hash(resolved), task.weights_sha256, environment())
        rows = solve_and_score(cfg, task, solvers, status)
        with status.stage("write"):
            if rows and out_dir is not None:
                write_table(rows, out_dir, cfg, logger)
                status.set(COMPLETED)
    return rows


def solve_and_score(cfg: DictConfig, task: Setup, solvers: dict[str, Solver], status: RunStatus) -> list[dict[str, Any]]:
    """One row per solver of ``solvers`` and the random baseline (none on DDP ranks above 0)."""
    region, group = locality_target(cfg)
    steps = [float(s) * cfg.viz.magnitude for s in cfg.compare.steps]
    generator, terms, space, z_eval = task.generator, task.terms, task.space, task.z_eval

    started = time.perf_counter()
    with status.stage("accumulate"):
        grams = accumulate(task.sample_grams, task.z_train, accumulation_trainer(cfg.trainer),
                           views_of(list(solvers.values()), task.terms, task.generator, task.space))
    if grams is None:  # a DDP rank above 0: rank 0 compares
        return []
    problem = Problem.of(grams, terms, generator, space)
    grams_s = time.perf_counter() - started
    rows = []
    bar = tqdm([*solvers.items(), ("random", None)], desc="comparing solvers", unit="solver", disable=bar_disable(), leave=False)
    with status.stage("solve"):
        for name, solver in bar:
            bar.set_postfix_str(name, refresh=False)
            started = time.perf_counter()
            if solver is None:
                count = max(1, EarlyProjection()(problem).directions.shape[1])
                solution = Solution(torch.zeros(count, dtype=torch.float64),
                                    random_directions(problem.activate.shape[0], count, cfg.seed + 1, problem.activate.device))
            else:
                solution = solver(problem)
            solution = solution.first(cfg.compare.max_directions or None)
            row: dict[str, Any] = {"solver": name, "directions": solution.directions.shape[1],
                                   "solve_s": time.perf_counter() - started, "grams_s": grams_s}
            if solution.directions.shape[1]:
                row.update(evaluate(generator, terms, space, solution, z_eval))
                if task.trust_terms is not None:
                    row.update(independent_trust(generator, task.trust_terms, space, solution, z_eval))
                if task.truth:
                    row.update(ground_truth(generator, space, task.truth, solution, problem, z_eval))
                row.update(edit_scores(generator, terms, task.analyzers, space, solution.directions, z_eval, steps, region, group))
            rows.append(row)
            log.info("%s: %d directions in %.2f s", name, row["directions"], row["solve_s"])
    return rows


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """A row's table cells: scalars as they are, per-direction lists averaged, the baseline's dropped."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("baseline/") or key.endswith("_per_direction") or key == "gt/principal_angles_deg":
            continue
        out[key] = sum(value) / len(value) if isinstance(value, list) and value else value
    return out


HEADLINE = ("directions", "gt/pass", "gt/principal_angle_max_deg", "gt/purity_mean", "gt/coverage_mean", "eval/gain",
            "eval/leak/", "locality@")  # the console's columns (a prefix: every key it starts); compare.md has all


def headline(rows: list[dict[str, Any]]) -> str:
    """The comparison's key columns, one row per solver (a markdown table)."""
    table = pd.DataFrame([summary(r) for r in rows])
    keys = [k for prefix in HEADLINE for k in table.columns if k == prefix or (prefix[-1] in "/@" and k.startswith(prefix))]
    return markdown(table[["solver", *keys]])


def write_table(rows: list[dict[str, Any]], out_dir: Path, cfg: DictConfig, logger: Any = None) -> None:
    """compare.md, compare.csv, compare.json in ``out_dir``, and the ``compare`` table in the W&B run ``logger``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([summary(r) for r in rows])
    title = f"# compare: {cfg.criteria.name}, space {cfg.space}, generator {cfg.generator._target_.split('.')[-1]}"
    (out_dir / "compare.md").write_text(f"{title}\n\n{markdown(table)}\n")
    write_csv(table, out_dir / "compare.csv")
    write_json(out_dir / "compare.json", {"rows": rows})
    if logger is not None:
        import wandb

        logger.log({"compare": wandb.Table(dataframe=table)})
