"""Edit metrics on hand-made images, landmarks and embeddings, where each value is known in closed form."""
from __future__ import annotations

import math

import pytest
import torch

from ice_exp.linalg import eigenspace_angle
from ice_exp.metrics.edit import IdentityCosine, LandmarkSplit, PixelLocality, TermChange


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
