"""The end of a sweep (``ice-exp -m``): one summary line, and a non-zero exit when any job failed.

A failing job only records failure.json (so the other jobs go on); without this callback the sweep would
exit 0 and a scheduler or a script would see success. Registered in conf/config.yaml (``hydra.callbacks``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ice_exp.records import COMPLETED


def sweep_outcome(root: Path) -> tuple[int, int, int]:
    """(jobs, finished, failed) of the job folders below ``root``: finished = metrics.json with status
    completed (or without a status: runs older than the status), failed = failure.json or another status."""
    jobs = finished = failed = 0
    for config in root.rglob("config_resolved.yaml"):
        job = config.parent
        jobs += 1
        metrics = job / "metrics.json"
        status = json.loads(metrics.read_text()).get("status", COMPLETED) if metrics.is_file() else None
        if (job / "failure.json").is_file() or (status is not None and status != COMPLETED):
            failed += 1
        elif status == COMPLETED:
            finished += 1
    return jobs, finished, failed


class FailureSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs, finished, failed = sweep_outcome(root)
        line = f"sweep {root}: {jobs} jobs, {finished} finished, {failed} failed"
        if failed:
            line += f" (errors in {root}/**/failure.json; table: ice-report {root})"
        print(line, file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(1)
