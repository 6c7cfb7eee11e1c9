"""Criteria on toyface, where the drawing says what a criterion must see."""
from __future__ import annotations

import pytest
import torch

from ice_exp.criteria.region_colour import RegionColour
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.world import OracleParser


@pytest.mark.parametrize("soft", [False, True])
def test_region_colour_residual_ignores_a_uniform_tone_shift_only_with_soft_masks(soft):
    """Skin tone adds the same colour to every skin, ear, nose and neck pixel. With the parser's soft mask and
    the least-squares colour the residual does not move at all; the seed's hard mask sees the anti-aliased
    edges move (the leak that made face_color inseparable from small colour factors at 128 px)."""
    g = ToyFaceGenerator(resolution=64, dtype=torch.float64)
    s = g.encode(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64), "s")
    criterion = RegionColour(OracleParser(), ["face_skin"], size=64, soft=soft)
    state = criterion.prepare(g.decode(s, "s"))
    tone = g.true_subspace(["skin_tone"], "s")[:, 0]
    fn = lambda v: criterion(g.decode(v, "s"), state)  # noqa: E731
    _, change = torch.func.jvp(fn, (s,), (tone.expand_as(s),))
    relative = float(change["residual"].norm() / change["mean"].norm())
    if soft:
        assert relative < 1e-9
    else:
        assert relative > 1e-2
    assert change["mean"].norm() > 0.01  # the colour itself moves


def test_region_colour_soft_mean_is_the_plain_mean_for_a_hard_mask():
    g = ToyFaceGenerator(resolution=32)
    frame = g.decode(g.encode(torch.zeros(1, g.z_dim), "s"), "s")
    hard = RegionColour(OracleParser(), ["hair"], size=16)
    state = hard.prepare(frame)
    mask = state["mask"]
    expected = (frame.image * mask).sum((2, 3)) / mask.sum((2, 3))
    assert torch.allclose(hard(frame, state)["mean"], expected)
