"""The discovery framework: ICE solvers on known answers, config validation, run outputs, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ice_exp import grams
from ice_exp.cli import run
from ice_exp.metrics.subspace import principal_angles
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.ice import EarlyProjection, LateProjection, null_intersection
from tests.conftest import make_config

REPO = Path(__file__).resolve().parents[1]


def _diag(*values: float) -> torch.Tensor:
    return torch.diag(torch.tensor(values, dtype=torch.float64))


def _e(dim: int, *idx: int) -> torch.Tensor:
    return torch.eye(dim, dtype=torch.float64)[:, list(idx)]


def test_early_projection_without_suppression_is_pca():
    sol = EarlyProjection(rho=0.1)(Problem(_diag(1.0, 4.0, 0.05, 2.0)))
    assert torch.allclose(sol.sigma, torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))
    assert principal_angles(sol.directions, _e(4, 1, 3, 0)).max() < 1e-6


def test_early_projection_maximises_inside_the_null_space_intersection():
    """M_act prefers e0; one term forbids e0, another forbids e1: the answer is e2 then e3."""
    act = _diag(10.0, 5.0, 2.0, 1.0, 0.0)
    sup = [SuppressTerm("a", _diag(1.0, 1e-5, 0, 0, 0), 1e-2), SuppressTerm("b", _diag(0, 3.0, 0, 0, 0), 1e-2)]
    sol = EarlyProjection(rho=1e-3)(Problem(act, sup))
    assert torch.allclose(sol.sigma, torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert principal_angles(sol.directions[:, :1], _e(5, 2)).max() < 1e-6
    assert principal_angles(sol.directions[:, 1:], _e(5, 3)).max() < 1e-6
    # the null space of term a keeps e1 (its eigenvalue 1e-5 < 1e-2 * 1), term b removes it
    assert null_intersection(Problem(act, sup[:1])).shape[1] == 4


def test_early_projection_handles_tilted_null_spaces():
    """A rotated problem has the rotated answer (no reliance on axis-aligned eigenvectors)."""
    rot = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    act = rot @ _diag(9.0, 4.0, 1.0, 0.5, 0.0, 0.0) @ rot.T
    sup = [SuppressTerm("s", rot @ _diag(2.0, 0, 0, 0, 0, 0) @ rot.T, 1e-3)]
    for solver in (EarlyProjection(rho=0.05), EarlyProjection(rho=0.05, null_space="sequential")):
        sol = solver(Problem(act, sup))
        assert principal_angles(sol.directions, rot[:, 1:4]).max() < 1e-6


def test_late_projection_uses_every_term_and_unit_columns():
    act = _diag(4.0, 3.0, 2.0, 0.0)
    act[0, 1] = act[1, 0] = 1.0  # PCA mixes e0 and e1
    sup = [SuppressTerm("a", _diag(1.0, 0, 0, 0), 1e-2), SuppressTerm("b", _diag(0, 0, 1.0, 0), 1e-2)]
    sol = LateProjection(rho=1e-3)(Problem(act, sup))
    assert torch.allclose(sol.directions.norm(dim=0), torch.ones(sol.directions.shape[1], dtype=torch.float64))
    assert (sol.directions[[0, 2]].abs() < 1e-9).all()  # both suppressed coordinates are gone
    assert principal_angles(sol.directions, _e(4, 1)).max() < 1e-6
    assert LateProjection()(Problem(act)).directions.shape[1] == 3  # no suppress term: plain PCA, no crash


def test_solution_is_empty_when_suppression_kills_the_target():
    sol = EarlyProjection()(Problem(_diag(1.0, 0.0), [SuppressTerm("all", _diag(1.0, 0.0), 1e-2)]))
    assert sol.directions.shape[1] == 0


@pytest.mark.parametrize("override, key, allowed", [
    ("criteria.suppress.outside_mouth.criterion.regions=[mouth,lipz]", "regions", "u_lip"),
    ("criteria.activate.criterion.group=mouths", "group", "inner_lip"),
    ("criteria.suppress.other_landmarks.ratio=1.5", "criteria.suppress.other_landmarks.ratio", "(0, 1)"),
    ("criteria.suppress.other_landmarks.ratio=0", "criteria.suppress.other_landmarks.ratio", "(0, 1)"),
    ("space=q", "space", "z, w, wp, s"),
    ("criteria.activate.part=everything", "criteria.activate.part", "group, others"),
    ("engine.mode=fast", "engine.mode", "loop"),
    ("+criteria.suppress.other_landmarks.criterion.colour=red", "unknown keys", "group"),
])
def test_bad_configs_fail_before_any_compute(override, key, allowed, monkeypatch, tmp_path):
    def no_compute(*args, **kwargs):
        raise AssertionError("a Jacobian was computed before the config was validated")

    monkeypatch.setattr(grams, "sample_grams", no_compute)
    with pytest.raises(ValueError) as err:
        run(make_config(override, "generator.resolution=32"), tmp_path)
    assert key in str(err.value) and allowed in str(err.value), str(err.value)


def test_empty_region_gives_a_clear_error(tmp_path):
    cfg = make_config("criteria.suppress.outside_mouth.criterion.regions=[hat]", "generator.resolution=32")
    with pytest.raises(ValueError, match=r"mask is empty on batch item"):
        run(cfg, tmp_path)


def test_run_writes_reproducible_outputs(tmp_path):
    metrics = run(make_config("generator.resolution=48", "samples.indices=[0]"), tmp_path)
    for name in ("config_resolved.yaml", "run_info.json", "metrics.json", "subspace.safetensors", "spectrum.png", "directions.png"):
        assert (tmp_path / name).is_file(), name
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["samples"]["indices"] == [0] and info["versions"]["torch"].startswith("2.")
    assert len(info["config_hash"]) == 16
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["gt/principal_angle_max_deg"] == metrics["gt/principal_angle_max_deg"]
    tensors = load_file(str(tmp_path / "subspace.safetensors"))
    assert tensors["directions"].shape == (192, metrics["solver/num_directions"])


def _discover(tmp: Path, *overrides: str) -> torch.Tensor:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "ice_exp", "logger=none", "counterfactual.enabled=false", "generator.resolution=32", "samples.indices=[0,1,2]",
           "samples.eval_num=0", f"hydra.run.dir={tmp}", *overrides]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    return load_file(str(tmp / "subspace.safetensors"))["directions"]


def test_two_process_ddp_gives_the_same_subspace(tmp_path):
    single = _discover(tmp_path / "single")
    ddp = _discover(tmp_path / "ddp", "trainer=ddp_cpu")
    assert single.shape == ddp.shape and single.shape[1] > 0
    assert principal_angles(single, ddp).max() < 1e-4


def test_wandb_offline_run_is_recorded_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = make_config("logger=wandb", "generator.resolution=32", "samples.indices=[0]", "samples.eval_num=1")
    run(cfg, tmp_path)
    records = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1 and records[0].stat().st_size > 0


def test_reduced_precision_run_reports_its_measured_error(tmp_path):
    metrics = run(make_config("engine.precision=bf16", "generator.resolution=32", "samples.indices=[0]"), tmp_path)
    angles = [v for k, v in metrics.items() if k.startswith("engine/precision_angle_deg/")]
    assert len(angles) == 2 and all(a >= 0 for a in angles)
