"""One discovery run, top to bottom: build → accumulate → solve → evaluate → write → explain → log.

Each stage is a plain function call that returns its values. Lightning appears only inside
:func:`accumulate` (devices, DDP, progress bar); after it, rank 0 alone solves, evaluates, explains and
writes, and the other DDP ranks return. Results are written as soon as they exist (the subspace and a first
metrics.json right after evaluation, so a later failure never loses them), metrics.json's final version and
the W&B record once at the end, with the same metric names. ``run_info.json`` and ``metrics.json`` carry the
run's status: ``completed``, or ``failed:<stage>`` with the error (then the error is re-raised).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ice_exp.common.files import write_json
from ice_exp.common.linalg import principal_angles
from ice_exp.engine.accumulate import accumulate
from ice_exp.engine.grams import precision_angles
from ice_exp.run.artifacts import environment, save_subspace
from ice_exp.run.build import Discovery, accumulation_trainer, build, is_rank_zero
from ice_exp.run.evaluation import score
from ice_exp.run.pictures import direction_grid, spectrum_plot
from ice_exp.run.records import COMPLETED, RunStatus, claim, start_record
from ice_exp.run.tracking import log_run, numeric, tracked
from ice_exp.solvers.base import Problem, Solution, views_of

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: Path | None = None) -> dict[str, Any]:
    """Discover the subspace of ``cfg`` (conf/config.yaml), score and explain it; returns the metrics (empty on
    DDP ranks above 0). With ``out_dir`` None nothing is written."""
    status = RunStatus(out_dir if is_rank_zero() else None)
    if status.out_dir is not None:
        claim(status.out_dir)  # before anything is written: another run's records stay untouched
    with status.stage("build"):
        built = build(cfg, out_dir)
        if status.out_dir is not None:
            start_record(status.out_dir, cfg, built.meta["config_hash"], built.weights_sha256, environment())
    with tracked(built.logger):  # the W&B run ends as failed when a stage raises or SIGTERM stops the run
        return discover(cfg, out_dir, built, status)


def discover(cfg: DictConfig, out_dir: Path | None, built: Discovery, status: RunStatus) -> dict[str, Any]:
    """The stages after the build, each recording its failure in ``status``."""
    started = time.perf_counter()
    with status.stage("accumulate"):
        grams = (accumulate(built.sample_grams, built.z_train, accumulation_trainer(cfg.trainer),
                            views_of([built.solver], built.terms, built.generator, built.space))
                 if built.solver.needs_grams else {})  # SeFa, GANSpace: no Grams to accumulate
    if grams is None or not is_rank_zero():  # a DDP rank above 0: rank 0 does the rest
        return {}

    with status.stage("solve"):
        problem = Problem.of(grams, built.terms, built.generator, built.space) if grams else \
            Problem(generator=built.generator, space=built.space)
        solution = built.solver(problem)
    metrics: dict[str, Any] = {"time/discovery_s": time.perf_counter() - started}  # accumulate + solve

    with status.stage("evaluate"):
        metrics |= score(built.generator, built.terms, built.space, problem, solution, built.z_eval, built.truth,
                         built.sample_grams, built.trust_terms)
        if cfg.engine.precision != "fp32":  # tf32 / bf16: the eigenspace error they cause
            u = built.generator.encode(built.z_train[:1], built.space)[0].detach()
            metrics |= precision_angles(built.generator, built.terms, u, built.space, **OmegaConf.to_container(cfg.engine))

    with status.stage("write"):
        if out_dir is not None:
            write_discovery(out_dir, built, problem, solution, metrics)
        if built.logger is not None:  # as the first metrics.json: a later failure leaves them on the dashboard
            built.logger.summary.update(numeric(metrics))

    rows: list[dict[str, Any]] = []
    with status.stage("explain"):
        if built.classifier is not None and solution.directions.shape[1]:
            from ice_exp.counterfactual.in_subspaces import explain, scalars  # pandas and the figures: only runs that explain

            name, task = cfg.criteria.name, OmegaConf.to_container(cfg.criteria.task)
            rows = explain(cfg.counterfactual, built.classifier, {name: (solution, built.meta)}, built.generator,
                           built.analyzers, {name: built.terms}, {name: task},
                           out_dir / "counterfactual" if out_dir is not None else None)
            metrics |= scalars(rows[0], "counterfactual/")

    with status.stage("log"):
        metrics["status"] = COMPLETED
        if out_dir is not None:
            write_json(out_dir / "metrics.json", metrics)
            status.set(COMPLETED)  # run_info.json
            log.info("outputs in %s", out_dir)
        if built.logger is not None:
            truth = built.generator.true_subspace(built.truth, built.space) if built.truth else None
            angles = None if truth is None else [float(principal_angles(v[:, None], truth)[0]) for v in solution.directions.T]
            log_run(built.logger, out_dir or Path("."), metrics, built.meta, cfg.seed, angles)
            if rows and out_dir is not None:
                from ice_exp.counterfactual.in_subspaces import log_explanation

                log_explanation(built.logger, rows, out_dir / "counterfactual")
    return metrics


def write_discovery(out_dir: Path, run: Discovery, problem: Problem, solution: Solution, metrics: dict[str, Any]) -> None:
    """subspace.safetensors, the first metrics.json (status ``running``: the explanation may follow),
    spectrum.png and directions.png."""
    save_subspace(out_dir / "subspace.safetensors", solution, run.meta)
    write_json(out_dir / "metrics.json", {**metrics, "status": "running"})
    spectrum_plot(problem, solution, out_dir / "spectrum.png", getattr(run.solver, "rho", None))
    shown = run.z_eval[:1] if len(run.z_eval) else run.z_train[:1]
    viz = run.cfg.viz
    direction_grid(run.generator, run.space, run.generator.encode(shown, run.space)[0],
                   solution.directions[:, : viz.directions], list(viz.steps), viz.magnitude, out_dir / "directions.png")
