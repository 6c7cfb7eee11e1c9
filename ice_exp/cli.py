"""The ``ice-exp`` entry point: a Hydra app that builds a discovery run from the composed config."""
from __future__ import annotations

import logging
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ice_exp.analyzers import Analyzers
from ice_exp.data import LatentSamples, latent_pool
from ice_exp.discovery import DiscoveryModule, RunSettings
from ice_exp.generators.base import check_space
from ice_exp.outputs import config_hash, versions, write_json
from ice_exp.terms import build_terms
from ice_exp.tracking import close, make_logger

log = logging.getLogger(__name__)


def _optional(node: Any) -> Any:
    return instantiate(node) if node else None


def build_analyzers(cfg: DictConfig) -> Analyzers:
    return Analyzers(parser=_optional(cfg.get("parser")), landmarker=_optional(cfg.get("landmarker")),
                     identity=_optional(cfg.get("identity")))


def truth_factors(cfg: DictConfig, generator: Any) -> list[str] | None:
    """The factor group to score against: criteria.truth, else the toyface group of criteria.name."""
    if not hasattr(generator, "true_subspace"):
        return None
    if cfg.criteria.get("truth"):
        return list(cfg.criteria.truth)
    from ice_exp.generators.toyface.tasks import TRUE_GROUPS

    return list(TRUE_GROUPS.get(cfg.criteria.name, ())) or None


def run(cfg: DictConfig, out_dir: Path | None = None) -> dict[str, Any]:
    """Validate the config, build everything, accumulate, solve, evaluate; returns the metrics."""
    space = check_space(cfg.space)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    analyzers = build_analyzers(cfg.analyzer)
    generator = instantiate(cfg.generator)
    terms = build_terms(OmegaConf.to_container(cfg.criteria, resolve=True), analyzers)
    solver = instantiate(cfg.solver)
    data = LatentSamples(generator.z_dim, seed=cfg.samples.seed, pool=cfg.samples.pool, indices=list(cfg.samples.indices))
    z_eval = latent_pool(cfg.samples.eval_seed, cfg.samples.eval_num, generator.z_dim)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    checksums = generator.weight_checksums()
    for model in analyzers.modules():
        checksums.update(getattr(model, "weight_checksums", dict)())
    meta = {"space": space, "criteria": cfg.criteria.name, "solver": cfg.solver._target_, "generator": cfg.generator._target_,
            "config_hash": config_hash(resolved)}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=True)
        write_json(out_dir / "run_info.json", {
            "config_hash": meta["config_hash"], "seed": cfg.seed, "samples": resolved["samples"],
            "versions": versions(), "weights_sha256": checksums, "torch_threads": torch.get_num_threads()})

    settings = RunSettings(space=space, engine=OmegaConf.to_container(cfg.engine, resolve=True), z_eval=z_eval,
                           truth=truth_factors(cfg, generator), out_dir=out_dir, steps=list(cfg.viz.steps),
                           magnitude=cfg.viz.magnitude, grid_directions=cfg.viz.directions, meta=meta)
    module = DiscoveryModule(generator, terms, solver, settings)
    tags = [f"generator:{cfg.generator._target_.split('.')[-1]}", f"space:{space}", f"criteria:{cfg.criteria.name}",
            f"solver:{cfg.solver._target_.split('.')[-1]}"]
    logger = make_logger(OmegaConf.to_container(cfg.logger, resolve=True) if cfg.logger else None,
                         out_dir or Path("."), cfg.name, tags, resolved)
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), logger=logger or False,
                         inference_mode=False, enable_checkpointing=False, enable_model_summary=False,
                         use_distributed_sampler=False)  # LatentSamples shards by rank itself, without padding
    trainer.validate(module, datamodule=data, verbose=False)
    found = module.solution is not None and module.solution.directions.shape[1] > 0
    if cfg.get("counterfactual") and cfg.counterfactual.enabled and trainer.is_global_zero and found:
        from ice_exp.counterfactual.explain import explain  # explain reads this module's builders

        table = explain(cfg, {cfg.criteria.name: (module.solution, meta)}, generator, analyzers, {cfg.criteria.name: terms},
                        out_dir / "counterfactual" if out_dir is not None else None, logger)
        module.metrics.update({f"counterfactual/{k}": v for k, v in table[0].items() if isinstance(v, (int, float))})
        if out_dir is not None:
            write_json(out_dir / "metrics.json", module.metrics)
    if trainer.is_global_zero:
        close(logger)
        if out_dir is not None:
            log.info("outputs in %s", out_dir)
    return module.metrics


CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the repo's conf/ (run from a checkout)


def record_failure(cfg: DictConfig, out_dir: Path, error: BaseException) -> Path:
    """Write <job dir>/failure.json (and config_resolved.yaml if the run died before writing it), so
    that ``ice-report`` lists the job among the failures of its sweep."""
    hc = HydraConfig.get()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "config_resolved.yaml").is_file():
        try:
            OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=True)
        except Exception:  # an interpolation error may be the failure itself: keep the unresolved config
            OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=False)
    path = out_dir / "failure.json"
    write_json(path, {"error_type": type(error).__name__, "message": str(error),
                      "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
                      "overrides": list(hc.overrides.task), "job_num": hc.job.get("num"), "job_id": hc.job.get("id"),
                      "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run. In a multirun (``-m``) a failing job writes failure.json into its folder and returns, so
    the other jobs of the sweep go on; a single run re-raises (non-zero exit)."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    try:
        metrics = run(cfg, out_dir)
    except Exception as error:
        if hc.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed (%s: %s); traceback in %s", hc.job.get("num"), type(error).__name__, error,
                  record_failure(cfg, out_dir, error))
        wandb = sys.modules.get("wandb")  # imported only when the run had a W&B logger
        if wandb is not None and wandb.run is not None:
            wandb.finish(exit_code=1)  # the W&B run shows as failed; the next job in this process starts its own
        return None
    for key in ("gt/principal_angle_max_deg", "gt/purity_mean", "gt/dim_found", "gt/dim_true", "eval/gain"):
        if key in metrics:
            log.info("%s = %s", key, metrics[key])
    return metrics.get("gt/principal_angle_max_deg")
