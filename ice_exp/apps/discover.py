"""``ice-exp`` (= ``python -m ice_exp``): one discovery run, or a sweep with ``-m``.

Around ice_exp.run.discovery.run, the protocol every app shares (ice_exp/run/protocol.py: the config checked
before torch is imported, SIGTERM caught, a failing job of a multirun recorded while the others go on); the
sweep then ends with one summary line and a non-zero exit if any job failed (ice_exp.run.sweeps.FailureSummary).
At the end, the results table and what the user must act on.
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import ice_exp.run.sweeps  # noqa: F401 - registers the resolvers of the launcher configs (conf/hydra/launcher)
from ice_exp.config import CONF_DIR
from ice_exp.run.protocol import run_job
from ice_exp.run.tracking import swept_overrides

log = logging.getLogger(__name__)
# the closing table: ground truth where known, then control, leakage (eval/leak/<term>), the trust scores
# without ground truth (trust/...: what a user of a real generator reads) and the flip rate
SHOWN = ("gt/pass", "gt/dim_found", "gt/dim_true", "gt/principal_angle_max_deg", "gt/purity_mean", "gt/coverage_mean",
         "eval/num_directions", "eval/gain", "eval/leak/", "trust/", "counterfactual/flip_rate")


def results_table(title: str, metrics: dict) -> str:
    """The run's key results, one aligned line each, as one text (one write: a parallel sweep's jobs do not
    interleave their lines)."""
    keys = [k for prefix in SHOWN for k in sorted(metrics) if k == prefix or
            (prefix.endswith("/") and k.startswith(prefix) and not k.endswith("_per_direction"))]
    width = max(map(len, keys), default=0)
    return "\n".join([title, *(f"  {k:<{width}}  {metrics[k]:.4g}" for k in keys)])


def advice(metrics: dict) -> list[str]:
    """What the user must act on: an empty subspace, or a subspace that misses the ground-truth bar."""
    if metrics.get("solver/num_directions") == 0:
        return ["no direction found: the subspace is empty (gain and purity are NaN); raise the suppress ratios "
                "(criteria.suppress.<term>.ratio) so their near-null spaces meet, or lower solver.rho"]
    if metrics.get("gt/pass") == 0:
        found = ", ".join(f"{k} {metrics[k]:.3g}" for k in SHOWN[1:6] if k in metrics)
        return [f"the subspace misses the ground-truth bar ({found}; the bars: docs/worlds.md)"]
    return []


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run; returns its ``optimized_metric`` (a sweeper's objective: default the largest principal angle to
    the truth) when the run has it."""
    metrics = run_job(cfg, lambda out_dir: discovery_run(cfg, out_dir))
    if not metrics:  # a failed job of a multirun, or a DDP rank above 0
        return None
    hc = HydraConfig.get()
    job = f" (job {hc.job.num})" if hc.mode == RunMode.MULTIRUN else ""
    log.info("%s", results_table(f"results of {' '.join([cfg.name, *swept_overrides()])}{job}:", metrics))
    for warning in advice(metrics):
        log.warning("%s%s", warning, job)
    return metrics.get(cfg.optimized_metric) if cfg.optimized_metric else None


def discovery_run(cfg: DictConfig, out_dir: Path) -> dict:
    from ice_exp.run.discovery import run  # torch and Lightning: only after the config passed its checks

    return run(cfg, out_dir)


if __name__ == "__main__":
    main()
