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

from ice_exp import stop
from ice_exp.config import CONF_DIR, check_config
from ice_exp.records import write_json

log = logging.getLogger(__name__)
SHOWN = ("gt/principal_angle_max_deg", "gt/purity_mean", "gt/dim_found", "gt/dim_true", "eval/gain")


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
    """One run; returns the largest principal angle to the truth (a sweeper's objective) when known."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    stop.install()
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
    for key in SHOWN:
        if key in metrics:
            log.info("%s = %s", key, metrics[key])
    return metrics.get("gt/principal_angle_max_deg")


if __name__ == "__main__":
    main()
