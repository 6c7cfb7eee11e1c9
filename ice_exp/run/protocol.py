"""What every app does around its work (ice-exp, ice-compare, ice-explain), so that all three behave alike:
the config checked before torch or Lightning is imported (a wrong value reported in a second), SIGTERM caught
(a stop between samples), and in a multirun a failing job recorded in its folder (failure.json, read by
ice-report and the sweep's exit status, ice_exp.run.sweeps) while the other jobs go on."""
from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ice_exp.common import stop
from ice_exp.common.console import quiet_library_warnings
from ice_exp.common.files import write_json
from ice_exp.config import check_config

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def run_job(cfg: DictConfig, work: Callable[[Path], Result]) -> Result | None:
    """``work(out_dir)`` once the config passed its checks (``work`` imports the heavy modules itself). A
    failure raises in a single run; in a multirun it is recorded and the job returns None, except a SIGTERM,
    which stops the whole sweep."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    stop.install()
    quiet_library_warnings()
    try:
        check_config(cfg)
        return work(out_dir)
    except Exception as error:
        if hc.mode != RunMode.MULTIRUN:
            raise
        log.error("job %s failed (%s: %s); traceback in %s", hc.job.get("num"), type(error).__name__, error,
                  record_failure(cfg, out_dir, error))
        if isinstance(error, stop.Stopped):
            raise
        return None


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
