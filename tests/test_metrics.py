"""Edit metrics on hand-made images, landmarks and embeddings, where each value is known in closed form."""
from __future__ import annotations

import math

import pytest
import torch

from ice_exp.common.linalg import best_fixed_subspace, eigenspace_angle
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.generators.toyface.factors import factor_index
from ice_exp.metrics.directional import agreement, local_coverage
from ice_exp.metrics.edit import IdentityCosine, LandmarkSplit, PixelLocality, TermChange
from ice_exp.run.evaluation import ceiling_subspace, ground_truth, passes
from ice_exp.solvers.base import Problem, Solution


def test_term_change_is_the_mean_squared_change_of_the_outputs():
    metric = TermChange()
    metric.update(torch.zeros(2, 3), torch.tensor([[1.0, 2, 2], [0, 0, 0]]))  # 9 and 0
    metric.update(torch.ones(1, 3), torch.ones(1, 3) + torch.tensor([[0.0, 0, 3]]))  # 9
    assert metric.compute() == {"change": pytest.approx(6.0)}


def test_pixel_locality_on_hand_made_images():
    """8x8 image, region = the top-left 4x4 block (16 of 64 pixels)."""
    x = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    inside_only = x.clone()
    inside_only[..., :2, :2] = 0.6  # D = 0.6 on 4 pixels, all inside
    half = x.clone()
    half[..., 0, :8] = 0.3  # D = 0.3 on a row: 4 pixels inside, 4 outside
    metric = PixelLocality()
    metric.update(x, inside_only, mask)
    assert metric.compute() == pytest.approx({"ratio": 1.0, "inside": 0.6 * 4 / 16, "outside": 0.0})
    metric.reset()
    metric.update(x, half, mask)
    assert metric.compute() == pytest.approx({"ratio": 0.5, "inside": 0.3 * 4 / 16, "outside": 0.3 * 4 / 48})
    metric.reset()
    channel = x.clone()
    channel[:, 0, :4, :4] = 0.9  # one channel of three: D = 0.3 on the whole region
    metric.update(x, channel, mask)
    assert metric.compute()["inside"] == pytest.approx(0.3)


def _face(iod: float = 10.0) -> torch.Tensor:
    points = torch.zeros(1, 68, 2)
    points[0, :, 0] = torch.arange(68.0)
    points[0, 36], points[0, 45] = torch.tensor([0.0, 0.0]), torch.tensor([iod, 0.0])
    return points


def test_landmark_split_normalises_by_the_outer_eye_corners():
    group = list(range(48, 68))
    metric = LandmarkSplit(group)
    moved = _face().clone()
    moved[0, group, 1] += 2.0  # the mouth moves by 2 px, inter-ocular distance 10
    metric.update(_face(), moved)
    out = metric.compute()
    assert out["target"] == pytest.approx(0.2) and out["others"] == 0 and out["split"] > 1e20
    metric.reset()
    shifted = _face() + torch.tensor([3.0, 4.0])  # every point moves by 5 px: no split
    metric.update(_face(), shifted)
    assert metric.compute() == pytest.approx({"target": 0.5, "others": 0.5, "split": 1.0})


def test_identity_cosine_and_fva_use_cosine_similarity():
    e = torch.tensor([[1.0, 0.0]]).expand(4, -1)
    angles = torch.tensor([0.0, math.acos(0.6), math.acos(0.4), math.pi])  # cos 1, 0.6, 0.4, -1
    edited = torch.stack([angles.cos(), angles.sin()], 1) * 3  # scale does not matter
    metric = IdentityCosine()
    metric.update(e, edited)
    assert metric.compute() == pytest.approx({"cosine": (1 + 0.6 + 0.4 - 1) / 4, "fva": 0.5})


def test_eigenspace_angle_of_a_rotated_gram():
    lam = torch.diag(torch.tensor([1.0, 0.1, 1e-5], dtype=torch.float64))
    t = math.radians(2.0)
    rot = torch.tensor([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]], dtype=torch.float64)
    rotated = rot @ torch.diag(torch.tensor([1.0, 1e-5, 0.1], dtype=torch.float64)) @ rot.T
    angle, dim, dim_exact = eigenspace_angle(rotated, lam, 1e-3)  # {e0, e2} after rotating e0 by 2° vs {e0, e1}
    assert (dim, dim_exact) == (2, 2) and angle == pytest.approx(90.0)
    angle, _, _ = eigenspace_angle(rot @ lam @ rot.T, lam, 0.5)  # only e0, rotated by 2°
    assert angle == pytest.approx(2.0)


def test_local_coverage_is_the_share_of_the_local_truths_reach_the_directions_span():
    jac = torch.zeros(3, 5, dtype=torch.float64)
    jac[0, 0], jac[1, 1], jac[2, 2] = 1.0, 2.0, 5.0  # factors 0, 1 are the group; factor 2 moves along e2
    truth = torch.eye(5, dtype=torch.float64)[:, :2]
    e = torch.eye(5, dtype=torch.float64)
    assert float(local_coverage(jac, [0, 1], truth, truth)) == pytest.approx(1.0)
    assert float(local_coverage(jac, [0, 1], truth, e[:, :1])) == pytest.approx(1 / 5)  # |1|² of |1|² + |2|²
    tilted = (e[:, 1] + e[:, 2])[:, None] / math.sqrt(2)  # half outside the truth: only its part inside counts
    assert float(local_coverage(jac, [0, 1], truth, tilted)) == pytest.approx(2 / 5)  # cos² 45° of 4 / 5
    assert float(local_coverage(jac, [0, 1], truth, e[:, 2:4])) == 0.0
    assert float(local_coverage(jac, [0, 1], truth, e[:, :0])) == 0.0


def test_best_fixed_subspace_of_tilted_lines_is_their_bisector():
    angle = math.radians(20)
    lines = [torch.tensor([[math.cos(a)], [math.sin(a)], [0.0]], dtype=torch.float64) for a in (angle, -angle)]
    best = best_fixed_subspace(lines, 1)
    assert abs(float(best[0, 0])) == pytest.approx(1.0)
    assert best_fixed_subspace(lines, 0).shape == (3, 0)


@pytest.mark.parametrize("metrics, expected", [
    ({"gt/curvature": 0.0, "gt/principal_angle_max_deg": 9.0, "gt/purity_mean": 0.95}, True),
    ({"gt/curvature": 0.0, "gt/principal_angle_max_deg": 11.0, "gt/purity_mean": 0.95}, False),
    ({"gt/curvature": 0.3, "gt/principal_angle_max_deg": 30.0, "gt/purity_mean": 0.86, "ceiling/purity_mean": 0.9,
      "gt/coverage_mean": 0.91, "ceiling/coverage_mean": 0.95}, True),  # the global angle does not count once curved
    ({"gt/curvature": 0.3, "gt/principal_angle_max_deg": 3.0, "gt/purity_mean": 0.84, "ceiling/purity_mean": 0.9,
      "gt/coverage_mean": 0.95, "ceiling/coverage_mean": 0.95}, False),
    ({"gt/curvature": 0.3, "gt/principal_angle_max_deg": 3.0, "gt/purity_mean": 0.99, "ceiling/purity_mean": 0.9,
      "gt/coverage_mean": 0.8, "ceiling/coverage_mean": 0.9}, False),
])
def test_the_pass_bar_is_the_worlds(metrics, expected):
    assert passes({"gt/dim_found": 2, "gt/dim_true": 2, **metrics}) is expected
    assert passes({"gt/dim_found": 3, "gt/dim_true": 2, **metrics}) is False


def test_ground_truth_in_a_curved_world_scores_against_each_faces_local_truth():
    """The ceiling is the world's best fixed subspace, fitted on faces of its own: scored on other faces it
    is neither pure at every face nor beaten by one face's local truth. The same construction fitted on the
    scored faces themselves is the in-sample optimum, above the ceiling (why the ceiling never sees them)."""
    g = ToyFaceGenerator(resolution=32, seed=5, curvature=0.3, dtype=torch.float64)
    group = ["mouth_width", "mouth_openness", "smile_curvature"]
    z = torch.randn(6, g.z_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    local = [g.true_subspace(group, "s", zi[None]) for zi in z]
    problem = Problem(torch.eye(g.s_dim, dtype=torch.float64))
    ceiling = ceiling_subspace(g, "s", factor_index(group), 3, z)
    fixed = ground_truth(g, "s", group, Solution(torch.ones(3), ceiling), problem, z)
    assert fixed["gt/curvature"] == 0.3 and fixed["gt/purity_mean"] == pytest.approx(fixed["ceiling/purity_mean"])
    assert 0.5 < fixed["ceiling/purity_mean"] < 1 - 1e-3 and fixed["gt/coverage_mean"] > 0.9 and fixed["gt/pass"] == 1
    in_sample = ground_truth(g, "s", group, Solution(torch.ones(3), best_fixed_subspace(local, 3)), problem, z)
    assert in_sample["gt/coverage_mean"] > fixed["ceiling/coverage_mean"]
    one_face = ground_truth(g, "s", group, Solution(torch.ones(3), local[0]), problem, z)
    assert one_face["gt/purity_mean"] < 1 - 1e-3 and one_face["gt/coverage_mean"] < 1 - 1e-3


def test_agreement_is_the_share_of_the_subspace_the_local_solutions_hold():
    e = torch.eye(3, dtype=torch.float64)
    mean_projector = (e[:, :1] @ e[:, :1].T + (e[:, :2] @ e[:, :2].T)) / 2  # e0 in both solutions, e1 in one
    assert agreement(mean_projector, e[:, :1]) == pytest.approx(1.0)
    assert agreement(mean_projector, e[:, :2]) == pytest.approx(0.75)
    assert agreement(mean_projector, e[:, 2:]) == pytest.approx(0.0)
    assert math.isnan(agreement(mean_projector, e[:, :0]))
