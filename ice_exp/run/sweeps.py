"""The end of a sweep (``ice-exp -m``): the headline table of its jobs, one closing line that points to
``ice-report``, and a non-zero exit when any job failed; and the launchers' GPU and task requests from the trainer.

A failing job only records failure.json (so the other jobs go on); without this callback the sweep would
exit 0 and a scheduler or a script would see success. Registered in conf/config.yaml (``hydra.callbacks``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ice_exp.run.records import RunRecord, read_status
from ice_exp.run.tracking import sweep_overrides, swept

HEADLINE = ("gt/pass", "gt/purity_mean", "gt/coverage_mean", "eval/gain", "counterfactual/flip_rate")  # those the jobs have


def job_order(folder: str) -> tuple[int, str]:
    """A sweep's job folders (``<job number>_<name>``) in job order, 2 before 10; other folders by name after."""
    number = folder.split("_", 1)[0]
    return (int(number), folder) if number.isdigit() else (sys.maxsize, folder)


def jobs(root: Path) -> list[tuple[Path, RunRecord]]:
    """The job folders below ``root`` in job order, each with its status read as ``ice-report`` reads it
    (:func:`ice_exp.run.records.read_status`): a job without any record counts as not finished."""
    folders = sorted((config.parent for config in root.rglob("config_resolved.yaml")), key=lambda f: job_order(f.name))
    return [(folder, read_status(folder)) for folder in folders]


def sweep_outcome(root: Path) -> tuple[int, int, int]:
    """(jobs, finished, not finished) of the job folders below ``root``."""
    records = [record for _, record in jobs(root)]
    finished = sum(record.finished for record in records)
    return len(records), finished, len(records) - finished


def headline(root: Path) -> str:
    """One line per job: its folder and swept overrides (``.hydra/overrides.yaml``), its status, and the
    HEADLINE metrics the jobs have (a markdown table, as ice-report's)."""
    import pandas as pd

    from ice_exp.common.tables import markdown

    found = jobs(root)
    shown = [m for m in HEADLINE if any(m in (record.metrics or {}) for _, record in found)]
    lines = []
    for folder, record in found:
        overrides = folder / ".hydra" / "overrides.yaml"
        varied = swept(yaml.safe_load(overrides.read_text()) or [], root) if overrides.is_file() else []
        lines.append({"job": " ".join([str(folder.relative_to(root)), *varied]), "status": record.status,
                      **{m: (record.metrics or {}).get(m) for m in shown}})
    return markdown(pd.DataFrame(lines, columns=["job", "status", *shown]))


def gpus_per_job(accelerator: str, devices: int) -> int | None:
    """The GPUs a launcher requests for one job of ``trainer``: none for a CPU trainer, ``trainer.devices``
    for a GPU one (resolver ``ice.gpus_per_job``, conf/hydra/launcher/slurm.yaml)."""
    if accelerator == "cpu":
        return None
    if devices < 1:
        raise ValueError(f"trainer.devices={devices} (every GPU of the node) cannot size a launcher's GPU request: "
                         "set trainer.devices to the GPUs of one job")
    return devices


def tasks_per_job(strategy: str, devices: int) -> int:
    """The processes a launcher starts per node for one job of ``trainer``: one per device for DDP (Lightning
    refuses a SLURM job whose tasks per node differ from its devices), else 1 (resolver ``ice.tasks_per_job``)."""
    if not str(strategy).startswith("ddp"):
        return 1
    if devices < 1:
        raise ValueError(f"trainer.devices={devices} (every device of the node) cannot size a launcher's tasks per node: "
                         "set trainer.devices to the devices of one job")
    return devices


def sweep_label(task_overrides: list[str], sweeper_params: Any = None) -> str:
    """A launcher's name for a sweep's jobs: ``ice-exp`` and what the sweep varies (``ice-exp seed=0,1,2``), on
    its command line or in its config's ``hydra.sweeper.params`` (resolver ``ice.sweep_label``)."""
    return " ".join(["ice-exp", *sweep_overrides(list(task_overrides), sweeper_params)])


OmegaConf.register_new_resolver("ice.gpus_per_job", gpus_per_job, replace=True)
OmegaConf.register_new_resolver("ice.sweep_label", sweep_label, replace=True)
OmegaConf.register_new_resolver("ice.tasks_per_job", tasks_per_job, replace=True)


class FailureSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        total, finished, not_finished = sweep_outcome(root)
        if total:
            print(headline(root), file=sys.stderr)
        line = f"sweep {root}: {total} jobs, {finished} finished, {not_finished} failed or unfinished"
        line += f" ({f'errors in {root}/**/failure.json; ' if not_finished else ''}table: ice-report {root})"
        print(line, file=sys.stderr, flush=True)
        if not_finished:
            raise SystemExit(1)
