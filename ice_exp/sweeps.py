"""The end of a sweep (``ice-exp -m``): one summary line, and a non-zero exit when any job failed.

A failing job only records failure.json (so the other jobs go on); without this callback the sweep would
exit 0 and a scheduler or a script would see success. Registered in conf/config.yaml (``hydra.callbacks``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ice_exp.records import read_status


def sweep_outcome(root: Path) -> tuple[int, int, int]:
    """(jobs, finished, not finished) of the job folders below ``root``, read as ``ice-report`` reads them
    (:func:`ice_exp.records.read_status`): a job without any record counts as not finished."""
    records = [read_status(config.parent) for config in root.rglob("config_resolved.yaml")]
    finished = sum(record.finished for record in records)
    return len(records), finished, len(records) - finished


class FailureSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs, finished, not_finished = sweep_outcome(root)
        line = f"sweep {root}: {jobs} jobs, {finished} finished, {not_finished} failed or unfinished"
        if not_finished:
            line += f" (errors in {root}/**/failure.json; table: ice-report {root})"
        print(line, file=sys.stderr, flush=True)
        if not_finished:
            raise SystemExit(1)
