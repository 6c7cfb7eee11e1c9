"""The discovery framework: ICE solvers on known answers, config validation, run outputs, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ice_exp.common.linalg import principal_angles
from ice_exp.run.discovery import run
from ice_exp.solvers.base import Problem, SuppressTerm
from ice_exp.solvers.ice import EarlyProjection, LateProjection, null_intersection
from tests.conftest import TINY, make_config

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


TINY_CLASSIFIER = ["classifier.resolution=32", "classifier.train.samples=256", "classifier.train.held_out=64",
                   "classifier.train.epochs=1"]  # runs, not accurate
EXPLAINED = ["counterfactual.iterations=3", "counterfactual.num_samples=4", "counterfactual.target_class=flip",
             "counterfactual.tile=32", "counterfactual.grid_samples=2"]


def _discover(tmp: Path, *overrides: str) -> dict:
    """A whole run as a user types it (evaluation and explanation on); returns its metrics.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "ice_exp", "logger=none", "generator.resolution=32", "samples.indices=[0,1,2]",
           "samples.eval_num=2", f"hydra.run.dir={tmp}", *TINY_CLASSIFIER, *EXPLAINED, *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp / "metrics.json").read_text())


def test_two_process_ddp_gives_the_same_results(tmp_path):
    """trainer=ddp_cpu splits the samples over two processes; rank 0 alone solves, evaluates, explains and writes:
    the same metrics.json (to round-off: the Gram sums are added in another order), subspace and explanation."""
    cache = f"classifier.cache_dir={tmp_path / 'classifier'}"
    single = _discover(tmp_path / "single", cache)
    ddp = _discover(tmp_path / "ddp", cache, "trainer=ddp_cpu")
    assert single["status"] == ddp["status"] == "completed" and single["solver/num_directions"] > 0
    assert single.keys() == ddp.keys() and "eval/gain" in ddp and "counterfactual/flip_rate" in ddp
    for key in set(single) - {"time/discovery_s"}:
        a, b = single[key], ddp[key]
        if isinstance(a, (int, float, list)):
            assert np.allclose(a, b, rtol=1e-6, atol=1e-8, equal_nan=True), (key, a, b)
        else:
            assert a == b, key
    angles = principal_angles(*(load_file(str(tmp_path / run / "subspace.safetensors"))["directions"] for run in ("single", "ddp")))
    assert angles.max() < 1e-4
    tables = [(tmp_path / run / "counterfactual" / "table.csv").read_text().splitlines() for run in ("single", "ddp")]
    assert tables[0][0] == tables[1][0] and len(tables[0]) == len(tables[1]) == 2  # header + the one subspace
    assert (tmp_path / "ddp" / "counterfactual" / "grid.png").is_file()
    info = json.loads((tmp_path / "ddp" / "run_info.json").read_text())
    assert info["status"] == "completed"


def test_wandb_offline_run_is_recorded_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = make_config("logger=wandb", *TINY, "samples.eval_num=1")
    run(cfg, tmp_path)
    records = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1 and records[0].stat().st_size > 0


def test_reduced_precision_run_reports_its_measured_error(tmp_path):
    metrics = run(make_config("engine.precision=bf16", *TINY), tmp_path)
    angles = [v for k, v in metrics.items() if k.startswith("engine/precision_angle_deg/")]
    assert len(angles) == 2 and all(0 < a < 20 for a in angles), angles  # bf16 moves the eigenspaces, a little
