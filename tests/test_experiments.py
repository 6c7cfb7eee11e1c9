"""Every toyface experiment composes, runs at a small size and meets the ground-truth bars."""
from __future__ import annotations

import pytest

from ice_exp.cli import run
from tests.conftest import make_config

TOYFACE_TASKS = ["face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_color", "face_color", "mouth_shape"]


@pytest.mark.parametrize("task", TOYFACE_TASKS)
def test_toyface_experiment_meets_ground_truth_bars(task, tmp_path):
    cfg = make_config(f"experiment=toyface/{task}")
    metrics = run(cfg, tmp_path)
    assert metrics["gt/dim_found"] == metrics["gt/dim_true"], metrics["solver/sigma"]
    assert metrics["gt/principal_angle_max_deg"] < 10
    assert metrics["gt/purity_mean"] > 0.9
    assert (tmp_path / "subspace.safetensors").is_file() and (tmp_path / "directions.png").is_file()
