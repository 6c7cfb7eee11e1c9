"""Explain a classifier inside discovered subspaces (docs/method.md §5).

:func:`explain` runs the counterfactual search in every subspace on the same samples, measures each
counterfactual, and writes the ranked table (``table.md``, ``table.csv``), the per-sample measures
(``samples.csv``), the Fig. 4 grid (``grid.png``), the difference maps (``differences.png``) and the
classifier's record (``classifier.json``). :func:`log_explanation` sends the table, the per-sample records and the pictures to W&B;
the callers log the scalars under their own names (a discovery run: ``counterfactual/<key>``, ice-explain:
``counterfactual/<subspace>/<key>``), the same in their files and in W&B.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor
from tqdm.auto import tqdm

from ice_exp.analyzers import Analyzers
from ice_exp.common.files import write_json
from ice_exp.common.latents import latent_pool
from ice_exp.common.progress import bar_disable
from ice_exp.common.tables import write_csv
from ice_exp.counterfactual.classifiers import Classifier
from ice_exp.counterfactual.figures import difference_grid, score_grid
from ice_exp.counterfactual.measures import measure, region_mask
from ice_exp.counterfactual.search import SearchConfig, SearchResult, counterfactual_search
from ice_exp.counterfactual.summary import SubspaceSummary, markdown_table, rank
from ice_exp.criteria.terms import Terms
from ice_exp.generators.base import Generator, check_space
from ice_exp.solvers.base import Solution

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from wandb import Run

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


def explain(cf: DictConfig, classifier: Classifier, subspaces: Subspaces, generator: Generator, analyzers: Analyzers,
            terms_by_name: dict[str, Terms], tasks: dict[str, Any], out_dir: Path | None, z: Tensor | None = None
            ) -> list[dict[str, Any]]:
    """Explain ``classifier`` in each subspace {name: (Solution, meta with 'space')} with the search
    settings ``cf`` (conf/counterfactual); returns the ranked table rows (one dict per subspace).
    ``terms_by_name`` holds each discovery run's terms (their changes are measured; may be empty), ``tasks``
    its task (conf/task: the region of the locality measures; may be empty); nothing
    is written when ``out_dir`` is None. ``z`` [N, z_dim] chooses the faces to explain (default:
    ``num_samples`` draws under ``sample_seed``); they are searched in batches of ``batch_size`` (null: all
    at once)."""
    settings = search_config(cf)
    names = selected(cf.subspaces, subspaces)
    reference = next(itertools.chain(generator.parameters(), generator.buffers()))
    classifier = classifier.to(reference.device, reference.dtype)
    z = latent_pool(cf.sample_seed, cf.num_samples, generator.z_dim) if z is None else z
    batch, grid = cf.batch_size or len(z), min(cf.grid_samples, len(z))

    rows, records, shown = [], [], {}
    steps = len(names) * -(-len(z) // batch) * settings.iterations
    with tqdm(total=steps, desc="counterfactual search", unit="step", disable=bar_disable(), leave=False) as bar:
        for name in names:
            solution, meta = subspaces[name]
            space, terms, summary = check_space(meta["space"]), terms_by_name.get(name), SubspaceSummary()
            for start, chunk in zip(range(0, len(z), batch), z.split(batch)):
                result = counterfactual_search(generator, classifier, generator.encode(chunk, space).detach(), space,
                                               solution.directions, settings, bar.update)
                measures = measure(result, terms, region_mask(tasks.get(name), analyzers.parser, result.frame_before))
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
        write_outputs(Path(out_dir), rows, records, shown, classifier, cf, len(z))
    return rows


def write_outputs(out: Path, rows: list[dict[str, Any]], records: list[dict[str, Any]], shown: dict[str, Shown],
                  classifier: Classifier, cf: DictConfig, samples: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    title = f"Which subspace flips '{classifier.target}' (target class {cf.target_class}; {samples} samples)"
    (out / "table.md").write_text(markdown_table(rows, title))
    write_csv(pd.DataFrame(rows), out / "table.csv")
    write_csv(pd.DataFrame(records), out / "samples.csv")
    write_json(out / "classifier.json", {"target": classifier.target, "heads": list(classifier.heads),
                                         "weights_sha256": classifier.weight_checksums(), **classifier.info})
    first = next(iter(shown.values()))  # every subspace starts from the same faces
    score_grid(first.before, first.p_before, {k: (v.after, v.p_after, v.flipped) for k, v in shown.items()},
               out / "grid.png", cf.tile)
    difference_grid(first.before, {k: v.after for k, v in shown.items()}, out / "differences.png", cf.tile)


def scalars(row: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numbers of one table row as ``<prefix><key>`` metrics."""
    return {f"{prefix}{key}": value for key, value in row.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}


def log_explanation(run: Run, rows: list[dict[str, Any]], out: Path) -> None:
    """The table (one row per subspace), the per-sample records (samples.csv) and the grid and difference
    pictures, each under its own key; the caller logs the scalars."""
    import wandb

    run.log({"counterfactual/table": wandb.Table(dataframe=pd.DataFrame(rows)),
             "counterfactual/per_sample": wandb.Table(dataframe=pd.read_csv(out / "samples.csv")),
             "counterfactual/grid": wandb.Image(str(out / "grid.png")),
             "counterfactual/differences": wandb.Image(str(out / "differences.png"))})
