"""``ice-exp`` (= ``python -m ice_exp``): one discovery run, or a sweep with ``-m``.

The app checks the composed config before it imports torch or Lightning, so a wrong value is reported in a
second; then it catches SIGTERM (a stop between samples) and runs ice_exp.discovery.run. In a multirun a
failing job writes failure.json into its folder and returns, so the other jobs go on; the sweep then ends
with one summary line and a non-zero exit if any job failed (ice_exp.sweeps.FailureSummary).
"""
from __future__ import annotations

import logging
import traceback
from datetime import datetime, timezone
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import ice_exp.sweeps  # noqa: F401 - registers the resolvers of the launcher configs (conf/hydra/launcher)
from ice_exp import stop
from ice_exp.config import CONF_DIR, check_config
from ice_exp.console import quiet_library_warnings
from ice_exp.records import write_json
from ice_exp.tracking import swept_overrides

log = logging.getLogger(__name__)
# the closing table: ground truth where known, then control, leakage (eval/leak/<term>) and the flip rate
SHOWN = ("gt/pass", "gt/dim_found", "gt/dim_true", "gt/principal_angle_max_deg", "gt/purity_mean", "gt/coverage_mean",
         "eval/num_directions", "eval/gain", "eval/leak/", "counterfactual/flip_rate")


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
    """One run; returns its ``optimized_metric`` (a sweeper's objective: default the largest principal angle to
    the truth) when the run has it."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    stop.install()
    quiet_library_warnings()
    try:
        check_config(cfg)
        from ice_exp.discovery import run  # torch and Lightning: only after the config passed its checks

        metrics = run(cfg, out_dir)
    except Exception as error:
        if hc.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed (%s: %s); traceback in %s", hc.job.get("num"), type(error).__name__, error,
                  record_failure(cfg, out_dir, error))
        if isinstance(error, stop.Stopped):
            raise  # SIGTERM stops the whole sweep process, not just this job
        return None
    if not metrics:  # a DDP rank above 0
        return None
    job = f" (job {hc.job.num})" if hc.mode == RunMode.MULTIRUN else ""
    log.info("%s", results_table(f"results of {' '.join([cfg.name, *swept_overrides()])}{job}:", metrics))
    for warning in advice(metrics):
        log.warning("%s%s", warning, job)
    return metrics.get(cfg.optimized_metric) if cfg.optimized_metric else None


if __name__ == "__main__":
    main()
