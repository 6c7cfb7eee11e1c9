"""Explain a classifier inside discovered subspaces (method.md §6) and the ``ice-explain`` entry point.

:func:`explain` runs the counterfactual search in every subspace on the same samples, measures each
counterfactual, and writes the ranked table (``table.md``, ``table.csv``), the per-sample measures
(``samples.csv``), the Fig. 4 grid (``grid.png``), the difference maps (``differences.png``) and the
classifier's record (``classifier.json``); with a logger it also logs them (W&B tables and images).

``python -m ice_exp.counterfactual.explain run_dirs=[outputs/a/<time>,outputs/b/<time>]`` does the same for
finished discovery runs: each folder's ``subspace.safetensors`` and ``config_resolved.yaml`` give the
subspace, its space and its terms; the runs must share one generator (``conf/explain.yaml``).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
import torch
from pytorch_lightning.loggers import Logger
from torch import Tensor

from ice_exp.analyzers import Analyzers
from ice_exp.cli import CONF_DIR, build_analyzers
from ice_exp.counterfactual.classifiers import Classifier
from ice_exp.counterfactual.figures import difference_grid, score_grid
from ice_exp.counterfactual.measures import measure, region_mask
from ice_exp.counterfactual.search import SearchConfig, SearchResult, counterfactual_search
from ice_exp.counterfactual.summary import SubspaceSummary, markdown_table, rank, write_csv
from ice_exp.data import latent_pool
from ice_exp.generators.base import Generator, check_space
from ice_exp.outputs import load_subspace, write_json
from ice_exp.solvers.base import Solution
from ice_exp.terms import Terms, build_terms
from ice_exp.tracking import make_logger

log = logging.getLogger(__name__)
Subspaces = dict[str, tuple[Solution, dict[str, Any]]]


def search_config(cf: DictConfig) -> SearchConfig:
    return SearchConfig(**{f.name: cf[f.name] for f in fields(SearchConfig)})


def selected(names: list[str] | None, subspaces: Subspaces) -> list[str]:
    names = list(subspaces) if names is None else list(names)
    unknown = [n for n in names if n not in subspaces]
    if unknown:
        raise ValueError(f"counterfactual.subspaces: unknown {unknown}; allowed values: {', '.join(subspaces)}")
    return names


@dataclass
class Shown:
    """What the figures show of one subspace: its first grid samples before and after."""

    before: Tensor  # [n, 3, R, R]
    p_before: Tensor  # [n]
    after: Tensor
    p_after: Tensor
    flipped: Tensor

    @staticmethod
    def of(result: SearchResult, count: int) -> "Shown":
        parts = (result.frame_before.image, result.p_before, result.frame_after.image, result.p_after, result.flipped)
        return Shown(*(t[:count].cpu() for t in parts))

    def extended(self, more: "Shown") -> "Shown":
        return Shown(*(torch.cat([getattr(self, f.name), getattr(more, f.name)]) for f in fields(self)))


def explain(cfg: DictConfig, subspaces: Subspaces, generator: Generator, analyzers: Analyzers,
            terms_by_name: dict[str, Terms], out_dir: Path | None, logger: Logger | None = None,
            z: Tensor | None = None) -> list[dict[str, Any]]:
    """Explain ``cfg.classifier`` in each subspace {name: (Solution, meta with 'space')}; returns the
    ranked table rows (one dict per subspace). ``terms_by_name`` holds each discovery run's terms (their
    changes are measured; may be empty); nothing is written when ``out_dir`` is None. ``z`` [N, z_dim]
    chooses the faces to explain (default: ``num_samples`` draws under ``sample_seed``); they are searched
    in batches of ``batch_size`` (null: all at once)."""
    cf = cfg.counterfactual
    settings = search_config(cf)
    names = selected(cf.subspaces, subspaces)
    reference = next(itertools.chain(generator.parameters(), generator.buffers()))
    classifier: Classifier = instantiate(cfg.classifier, _convert_="all").to(reference.device, reference.dtype)
    z = latent_pool(cf.sample_seed, cf.num_samples, generator.z_dim) if z is None else z
    regions = OmegaConf.to_container(cf.regions, resolve=True) if cf.get("regions") else {}
    batch, grid = cf.batch_size or len(z), min(cf.grid_samples, len(z))

    rows, records, shown = [], [], {}
    for name in names:
        solution, meta = subspaces[name]
        space, terms, summary = check_space(meta["space"]), terms_by_name.get(name), SubspaceSummary()
        for start, chunk in zip(range(0, len(z), batch), z.split(batch)):
            result = counterfactual_search(generator, classifier, generator.encode(chunk, space).detach(), space,
                                           solution.directions, settings)
            measures = measure(result, terms, region_mask(name, terms, analyzers.parser, result.frame_before, regions))
            summary.update(measures)
            records += [{"subspace": name, "sample": start + i, **{k: float(v[i]) for k, v in measures.items()}}
                        for i in range(len(chunk))]
            if start < grid:
                part = Shown.of(result, grid - start)
                shown[name] = shown[name].extended(part) if name in shown else part
        rows.append({"subspace": name, "space": space, "dim": solution.directions.shape[1], **summary.compute()})
        log.info("counterfactual %s: flip rate %.2f over %d eligible samples", name, rows[-1]["flip_rate"], rows[-1]["eligible"])
    rows = rank(rows)
    if out_dir is not None:
        write_outputs(Path(out_dir), rows, records, shown, classifier, cf, len(z), logger)
    return rows


def write_outputs(out: Path, rows: list[dict[str, Any]], records: list[dict[str, Any]], shown: dict[str, Shown],
                  classifier: Classifier, cf: DictConfig, samples: int, logger: Logger | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    title = f"Which subspace flips '{classifier.target}' (target class {cf.target_class}; {samples} samples)"
    (out / "table.md").write_text(markdown_table(rows, title))
    write_csv(out / "table.csv", rows)
    write_csv(out / "samples.csv", records)
    write_json(out / "classifier.json", {"target": classifier.target, "heads": list(classifier.heads),
                                         "weights_sha256": classifier.weight_checksums(), **classifier.info})
    first = next(iter(shown.values()))  # every subspace starts from the same faces
    score_grid(first.before, first.p_before, {k: (v.after, v.p_after, v.flipped) for k, v in shown.items()},
               out / "grid.png", cf.tile)
    difference_grid(first.before, {k: v.after for k, v in shown.items()}, out / "differences.png", cf.tile)
    if logger is None:
        return
    logger.log_metrics({f"counterfactual/{r['subspace']}/{key}": r[key] for r in rows
                        for key in ("flip_rate", "dp", "median_norm_flipped") if not math.isnan(r[key])})
    if hasattr(logger, "log_table"):
        columns = list(dict.fromkeys(k for r in rows for k in r))
        logger.log_table(key="counterfactual/table", columns=columns, data=[[r.get(c) for c in columns] for r in rows])
    if hasattr(logger, "log_image"):
        logger.log_image(key="counterfactual/images", images=[str(out / "grid.png"), str(out / "differences.png")],
                         caption=["counterfactuals", "differences"])


# --- ice-explain: explain across finished discovery runs ----------------------------------------------------
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
    if not cfg.run_dirs:
        raise ValueError("run_dirs: give the discovery run folders to explain, e.g. run_dirs=[outputs/mouth_shape/<time>]")
    subspaces, configs = load_runs(list(cfg.run_dirs))
    first = next(iter(configs.values()))
    generators = {OmegaConf.to_yaml(c.generator) for c in configs.values()}
    if len(generators) > 1:
        raise ValueError(f"run_dirs: the runs use {len(generators)} different generators; explain one generator at a time")
    cfg = OmegaConf.merge(OmegaConf.create({"generator": first.generator}), cfg)  # the classifier may read generator.*
    analyzers_by_config: dict[str, Analyzers] = {}
    terms_by_name = {}
    for name, run_cfg in configs.items():
        key = OmegaConf.to_yaml(run_cfg.analyzer)
        if key not in analyzers_by_config:
            analyzers_by_config[key] = build_analyzers(run_cfg.analyzer)
        terms_by_name[name] = build_terms(OmegaConf.to_container(run_cfg.criteria, resolve=True), analyzers_by_config[key])
    generator = instantiate(first.generator)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(resolved.get("logger"), out_dir or Path("."), cfg.name, ["explain"], resolved)
    rows = explain(cfg, subspaces, generator, analyzers_by_config[OmegaConf.to_yaml(first.analyzer)], terms_by_name,
                   out_dir, logger)
    if logger is not None:
        logger.finalize("success")
    return rows


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="explain")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    explain_runs(cfg, out_dir)
    print((out_dir / "table.md").read_text())


if __name__ == "__main__":
    main()
