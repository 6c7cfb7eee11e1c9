"""Explain a classifier inside the subspaces of finished discovery runs (the app: ``ice-explain``,
ice_exp/apps/explain.py; config: conf/explain.yaml). Each folder's ``subspace.safetensors`` and
``config_resolved.yaml`` give the subspace, its space, its terms and its task; the runs must share one generator.
Writes the outputs of ice_exp.counterfactual.in_subspaces and logs ``counterfactual/<subspace>/<key>``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ice_exp.analyzers import Analyzers
from ice_exp.counterfactual.in_subspaces import Subspaces, explain, log_explanation, scalars
from ice_exp.criteria.terms import build_terms
from ice_exp.run.artifacts import load_subspace
from ice_exp.run.build import build_analyzers, instantiated
from ice_exp.run.tracking import make_logger, tracked


def load_runs(run_dirs: list[str]) -> tuple[Subspaces, dict[str, DictConfig]]:
    """{name: (Solution, meta)} and {name: the run's resolved config}; names are the runs' criteria names
    (suffixed with the folder name when two runs share one)."""
    subspaces: Subspaces = {}
    configs: dict[str, DictConfig] = {}
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "config_resolved.yaml").is_file():
            raise FileNotFoundError(f"run_dirs: {run_dir} has no config_resolved.yaml (is it a discovery run folder?)")
        solution, meta = load_subspace(run_dir / "subspace.safetensors")
        name = meta.get("criteria", run_dir.name)
        name = f"{name}@{run_dir.name}" if name in subspaces else name
        subspaces[name], configs[name] = (solution, meta), OmegaConf.load(run_dir / "config_resolved.yaml")
    return subspaces, configs


def explain_runs(cfg: DictConfig, out_dir: Path | None) -> list[dict[str, Any]]:
    """Build each run's analyzers and terms and the shared generator, explain, log; returns the table rows."""
    if not cfg.run_dirs:
        raise ValueError("run_dirs: give the discovery run folders to explain, e.g. run_dirs=[outputs/mouth_shape/<time>]")
    subspaces, configs = load_runs(list(cfg.run_dirs))
    first = next(iter(configs.values()))
    generators = {OmegaConf.to_yaml(c.generator) for c in configs.values()}
    if len(generators) > 1:
        raise ValueError(f"run_dirs: the runs use {len(generators)} different generators; explain one generator at a time")
    cfg = OmegaConf.merge(OmegaConf.create({"generator": first.generator}), cfg)  # the classifier may read generator.*
    analyzers_by_config: dict[str, Analyzers] = {}
    terms_by_name, tasks = {}, {}
    for name, run_cfg in configs.items():
        tasks[name] = OmegaConf.to_container(run_cfg.criteria.task) if "task" in run_cfg.criteria else None
        key = OmegaConf.to_yaml(run_cfg.analyzer)
        if key not in analyzers_by_config:
            analyzers_by_config[key] = build_analyzers(run_cfg.analyzer)
        terms_by_name[name] = build_terms(OmegaConf.to_container(run_cfg.criteria, resolve=True), analyzers_by_config[key])
    generator = instantiated(first.generator)
    classifier = instantiated(cfg.classifier, _convert_="all")
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    logger = make_logger(resolved.get("logger"), out_dir or Path("."), cfg.name, ["explain"], resolved, job_type="explain")
    with tracked(logger):
        rows = explain(cfg.counterfactual, classifier, subspaces, generator, analyzers_by_config[OmegaConf.to_yaml(first.analyzer)],
                       terms_by_name, tasks, out_dir)
        if logger is not None:
            logger.summary.update({k: v for r in rows for k, v in scalars(r, f"counterfactual/{r['subspace']}/").items()})
            if out_dir is not None:
                log_explanation(logger, rows, out_dir)
    return rows
