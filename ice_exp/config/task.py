"""The tasks (conf/task/<name>.yaml): what each of the seven subspaces is about, in one place.

A task names the parser regions its pixel change stays inside, the landmark group it moves, whether the
other landmarks stay still, whether it is a uniform colour shift, and (toyface) the factors that do all of
that. A run reads its task from ``criteria.task`` (each criteria file selects one); the toyface truth check
(ice_exp/world/truth.py), the counterfactual measures and ice-compare read the same files.
"""
from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import OmegaConf

from ice_exp.config import CONF_DIR
from ice_exp.config.schema import Task

TASK_DIR = Path(CONF_DIR) / "task"


def load_task(name: str) -> Task:
    """conf/task/<name>.yaml, checked against the schema (ice_exp.config.schema.Task)."""
    path = TASK_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"task: unknown {name!r}; allowed values: {', '.join(task_names())}")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Task), OmegaConf.load(path)))


def task_names() -> list[str]:
    """Every task of conf/task, in the seed's order (the order of the README tables)."""
    order = ["face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape"]
    names = sorted(p.stem for p in TASK_DIR.glob("*.yaml"))
    return [n for n in order if n in names] + [n for n in names if n not in order]


@functools.cache
def true_groups() -> dict[str, tuple[str, ...]]:
    """{task: its toyface factor group}, read from conf/task once, on first use."""
    return {name: tuple(load_task(name).truth or ()) for name in task_names()}
