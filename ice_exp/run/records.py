"""A run's JSON records (metrics.json, run_info.json, failure.json) and its status in them: ``running``,
``completed``, or ``failed:<stage>`` with the error, so that a run that died after writing part of its
results is never mistaken for a finished one. :func:`read_status` is the one reader of these records, for
``ice-report`` and for a sweep's exit status alike: only ``completed`` is finished.
Light on purpose (no torch): the apps write failure records before anything heavy is imported."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ice_exp.common.files import update_json, write_json
from ice_exp.common.stop import Stopped

COMPLETED = "completed"
UNFINISHED = "unfinished"  # no record at all: killed before writing one, timed out, or still running


def failed_status(stage: str, error: BaseException) -> str:
    """``failed:<stage>``, with the signal for a stopped run: ``failed:accumulate (SIGTERM)``."""
    return f"failed:{stage}" + (f" ({error.signal})" if isinstance(error, Stopped) else "")


class RunStatus:
    """Records each stage's failure in ``out_dir`` (None: records nothing, e.g. DDP ranks above 0)."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir

    def set(self, status: str) -> None:
        """The status in run_info.json (the final metrics.json carries its own)."""
        if self.out_dir is not None:
            update_json(self.out_dir / "run_info.json", {"status": status})

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run one stage; its exception is recorded as ``failed:<name>`` with the error in run_info.json, and
        in metrics.json once the run has written one (its results stay, marked), then re-raised."""
        try:
            yield
        except BaseException as error:
            if self.out_dir is not None:
                values = {"status": failed_status(name, error), "error": f"{type(error).__name__}: {error}"}
                self.out_dir.mkdir(parents=True, exist_ok=True)
                update_json(self.out_dir / "run_info.json", values)
                if (self.out_dir / "metrics.json").is_file():
                    update_json(self.out_dir / "metrics.json", values)
            raise


@dataclass
class RunRecord:
    """What a run folder's records say: its status, its metrics (completed runs only) and its failure."""

    status: str
    metrics: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status == COMPLETED


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_status(folder: Path) -> RunRecord:
    """The run's status from failure.json (written by ``ice-exp -m``), metrics.json and run_info.json: a
    failure record or a recorded ``failed:<stage>`` / ``running`` status is not finished, nor is a folder
    with no record (``unfinished``) or an unreadable one; a metrics.json without a status is ``completed``
    (runs older than the status), as is a run_info.json that says so without a metrics.json (ice-compare)."""
    try:
        failure, metrics, info = (_json(folder / name) for name in ("failure.json", "metrics.json", "run_info.json"))
    except json.JSONDecodeError as error:  # a job killed while writing
        return RunRecord("unreadable", failure={"error_type": "Unreadable", "message": str(error)})
    recorded = (metrics or {}).get("status") or (info or {}).get("status")
    if failure is not None:
        return RunRecord(recorded if recorded and recorded.startswith("failed") else "failed", failure=failure)
    if recorded == COMPLETED or (metrics is not None and recorded is None):
        return RunRecord(COMPLETED, metrics=metrics or {})  # a comparison's results are in compare.json
    if recorded is not None and recorded != COMPLETED:
        error = (metrics or {}).get("error") or (info or {}).get("error") or "stopped before the end (killed or still running)"
        return RunRecord(recorded, failure={"error_type": recorded, "message": error})
    return RunRecord(UNFINISHED, failure={"error_type": "Unfinished",
                                          "message": "no metrics.json nor failure.json (killed, timed out or still running)"})


RESULTS = ("subspace.safetensors", "metrics.json", "compare.json")  # a folder holding one of these holds a run's results


def start_record(out_dir: Path, cfg: DictConfig, config_hash: str, weights_sha256: dict[str, str],
                 environment: dict[str, Any]) -> None:
    """The resolved config and run_info.json (config hash, seeds, samples, weight checksums, ``environment``: artifacts.environment()),
    status ``running``: what makes a run reproducible, written before its work starts."""
    OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=True)
    write_json(out_dir / "run_info.json", {
        "status": "running", "config_hash": config_hash, "seed": cfg.seed,
        "samples": OmegaConf.to_container(cfg.samples, resolve=True), "weights_sha256": weights_sha256,
        **environment})


def claim(out_dir: Path) -> None:
    """Make ``out_dir`` this run's folder; refuse one that already holds a run's results (two runs in one
    folder would overwrite each other's files and mix their logs)."""
    found = [name for name in RESULTS if (out_dir / name).exists()]
    if found:
        raise FileExistsError(f"run folder {out_dir} already holds a run's results ({', '.join(found)}); "
                              f"choose another hydra.run.dir or remove that run")
    out_dir.mkdir(parents=True, exist_ok=True)
